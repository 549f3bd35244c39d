"""Syntax-checks Bicep files with the tree-sitter Bicep grammar (no `bicep` binary needed).

    python3 -m venv /tmp/ts && /tmp/ts/bin/pip install tree-sitter tree-sitter-bicep
    /tmp/ts/bin/python infra/syntax_check.py infra/main.bicep

This finds syntax errors only (braces, commas, strings, decorators); it does not check resource
types, property names or API versions: `az bicep build` does, where the Bicep CLI is available.
Exits 1 when a file has a syntax problem.
"""
import sys, tree_sitter, tree_sitter_bicep
lang = tree_sitter.Language(tree_sitter_bicep.language())
p = tree_sitter.Parser(lang)
src = open(sys.argv[1],'rb').read()
t = p.parse(src)
bad = []
def walk(n):
    if n.type == 'ERROR' or n.is_missing:
        bad.append(n)
    for c in n.children: walk(c)
walk(t.root_node)
for n in bad[:20]:
    print(f"{'MISSING' if n.is_missing else 'ERROR'} at line {n.start_point[0]+1}:{n.start_point[1]+1}: {src[n.start_byte:n.end_byte][:80]!r}")
print(f"{sys.argv[1]}: {len(bad)} syntax problems; {len(t.root_node.children)} top-level nodes")
sys.exit(1 if bad else 0)
