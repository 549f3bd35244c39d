//! The container runtime conformance suite (`e2e::runtime_conformance`, where each check and
//! each backend's gaps are explained) against every backend this machine has, one test per
//! check and backend (`process::kill_is_137`, `aci::kill_is_137`, ...):
//!
//! - `process`: real children running the static worker (always);
//! - `docker`: real containers of the worker test image (needs a Docker Engine: skipped
//!   outside CI, mandatory in CI);
//! - `aci`: the ACI runtime over real HTTP against the ARM stand-in (`e2e::arm`, every behaviour
//!   cited to its source), whose container groups run the real worker (`e2e::aci_containers`);
//! - `fake`: the in-memory `FakeRuntime` the handler's unit tests use, scripted to do what each
//!   piece of work would.

e2e::runtime_conformance!(process, e2e::runtimes::process());
e2e::runtime_conformance!(docker, e2e::runtimes::docker());
e2e::runtime_conformance!(aci, e2e::runtimes::aci());
e2e::runtime_conformance!(fake, e2e::runtimes::fake());
