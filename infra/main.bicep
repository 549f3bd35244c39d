// Every Azure resource of Event-Driven ACI, deployed into one resource group:
//
//   az group create -n eda-rg -l westeurope
//   az deployment group create -g eda-rg -f infra/main.bicep -p prefix=eda<unique>
//
// NOT COMPILED HERE: no `bicep` binary could be installed on the machine this was written on.
// Every resource and property was checked by hand against its Azure resource reference for the
// api-version used (docs/AZURE.md, "Bicep: what was checked how"); run
// `az bicep build -f infra/main.bicep` before the first deployment.
//
// BEFORE THE FIRST DEPLOYMENT, once per subscription (the template deploys at resource-group
// scope and cannot register resource providers; the Function App's role cannot either, and ACI
// answers every create with 409 MissingSubscriptionRegistration until it is done):
//   az provider register --namespace Microsoft.ContainerInstance
//
// Redeploying is safe and idempotent: no value changes between deployments unless a parameter
// does (no newGuid()), and the code package is not an app setting on the default Flex
// Consumption plan (functionAppConfig.deployment), so the app keeps its code. On Y1/EP1 pass
// the package URL as `packageUri` to keep WEBSITE_RUN_FROM_PACKAGE (docs/AZURE.md).
//
// What it makes:
//   - Service Bus namespace + work queue (max delivery count, lock duration, dead-lettering)
//   - Cosmos DB account (API for MongoDB), database and tasks collection
//   - Storage account (the Functions host's own state), Log Analytics + Application Insights
//   - Container registry for the worker image, and a user-assigned identity with AcrPull that
//     the container groups pull with (no registry password anywhere)
//   - Linux Function App (custom handler) with a system-assigned identity and its app settings,
//     on a Flex Consumption plan (FC1, default) or Linux Consumption (Y1) / Elastic Premium (EP1)
//   - Roles for the Function App's identity: a custom role on this resource group that can
//     manage container groups and read their metrics, and nothing else (Contributor would also
//     let it change every other resource here); on the work queue only, the Service Bus roles
//     the Functions docs list for an identity-based trigger (Data Receiver, Data Owner: the
//     scale controller needs Manage) and output binding (Data Sender); Managed Identity
//     Operator on the pull identity only (to attach it to container groups); on FC1, Storage
//     Blob Data Contributor on the storage account (the deployment package container).

@description('Short lowercase prefix for resource names (3-11 letters and digits); must make globally unique names.')
@minLength(3)
@maxLength(11)
param prefix string

@description('Region of every resource, including the container groups.')
param location string = resourceGroup().location

@description('Work queue name.')
param queueName string = 'work'

@description('Deliveries of one message before Service Bus dead-letters it (the handler marks the task DeadLettered on the last one).')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 5

@description('Peek-lock duration of a message: longer than one spawn (create + wait for the container group). ISO 8601, at most PT5M.')
param lockDuration string = 'PT5M'

@description('Worker image tag, pushed to the registry this template makes (docs/AZURE.md shows how).')
param workerImageTag string = 'eda-worker:latest'

@description('Containers running at once (also the Service Bus trigger\'s maxConcurrentCalls in host.json).')
param concurrency int = 16

@description('CPU cores per container.')
param cpu string = '1'

@description('Memory per container in MiB.')
param memoryMb int = 1536

@description('Container groups an ACI standby pool keeps running for warm starts (0: none, every task starts cold). Needs `az provider register --namespace Microsoft.StandbyPool` and standbyPoolProviderObjectId (docs/AZURE.md, "Warm starts").')
@minValue(0)
@maxValue(2000)
param standbyPoolSize int = 0

@description('Object id of the "Standby Pool Resource Provider" service principal of your tenant: `az ad sp list --display-name "Standby Pool Resource Provider" --query [0].id -o tsv`. Required when standbyPoolSize > 0: the pool creates the container groups with its own identity.')
param standbyPoolProviderObjectId string = ''

@description('Most running container groups of one concurrency key (a task\'s "key"); 0: no cap but `concurrency` (EDA_KEY_CAP; docs/AZURE.md "Priority, delay, keys and backpressure in Azure").')
@minValue(0)
param keyCap int = 0

@description('Per-key overrides of keyCap, `key=N,...` (EDA_KEY_CAPS); empty: none.')
param keyCaps string = ''

@description('Most tasks waiting (Pending) in all; over it POST /api/work answers 429 (EDA_MAX_QUEUED); 0: no cap.')
@minValue(0)
param maxQueued int = 0

@description('Most tasks waiting per concurrency key (EDA_MAX_QUEUED_PER_KEY); 0: no cap.')
@minValue(0)
param maxQueuedPerKey int = 0

@description('Images a task may ask for besides the worker image, comma-separated (EDA_ALLOWED_IMAGES); each must be pullable with the pull identity. Empty: the worker image only.')
param allowedImages string = ''

@description('Seconds a finished task is kept with its logs and metrics (EDA_RETENTION_SECS); 0 keeps them forever.')
@minValue(0)
param retentionSecs int = 604800

@description('Completion webhook URLs, comma-separated (EDA_WEBHOOK_URLS); empty: none.')
param webhookUrls string = ''

@description('HMAC-SHA256 key of the webhooks\' X-EDA-Signature header (EDA_WEBHOOK_SECRET).')
@secure()
param webhookSecret string = ''

@description('Which changes send a webhook: terminal (ends only) or all (EDA_WEBHOOK_EVENTS).')
@allowed([
  'terminal'
  'all'
])
param webhookEvents string = 'terminal'

@description('How often ReconcileTimer runs (NCRONTAB with seconds).')
param reconcileSchedule string = '*/10 * * * * *'

@description('API key the /api routes require (Authorization: Bearer or x-api-key). Required, and the same on every deployment (a generated default would change the key on each redeploy): e.g. `openssl rand -hex 24` once, kept in your secret store.')
@secure()
@minLength(16)
param apiKey string

@description('Function App plan: FC1 (Flex Consumption, default), Y1 (Linux Consumption, retiring September 2028) or EP1 (Elastic Premium).')
@allowed([
  'FC1'
  'Y1'
  'EP1'
])
param planSku string = 'FC1'

@description('Y1/EP1 only: the code package URL zip deploy put in WEBSITE_RUN_FROM_PACKAGE (read it with `az functionapp config appsettings list`). A redeploy writes every app setting, so pass it to keep the app\'s code; empty on the first deployment. Unused on FC1, whose package lives in functionAppConfig.deployment.')
param packageUri string = ''

@description('FC1 only: most instances the app scales out to (40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('FC1 only: memory per instance in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

var names = {
  serviceBus: '${prefix}-sb'
  cosmos: '${prefix}-cosmos'
  storage: toLower(replace('${prefix}st${uniqueString(resourceGroup().id)}', '-', ''))
  logs: '${prefix}-logs'
  insights: '${prefix}-ai'
  registry: toLower(replace('${prefix}acr${uniqueString(resourceGroup().id)}', '-', ''))
  pullIdentity: '${prefix}-acr-pull'
  plan: '${prefix}-plan'
  app: '${prefix}-func'
  deploymentContainer: 'app-package'
  workerProfile: '${prefix}-worker'
  standbyPool: '${prefix}-pool'
}
var isFlex = planSku == 'FC1'
var useStandby = standbyPoolSize > 0
// Memory as ACI asks for it (GB in tenths, rounded up), the same rule as the handler's
// `runtime::aci::memory_gb`: a task fits the pool only when its shape is the profile's.
var memoryTenthsGb = (memoryMb * 10 + 1023) / 1024
var mongoDatabase = 'eda'
var mongoCollection = 'tasks'

// ---------------------------------------------------------------- Service Bus

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: names.serviceBus
  location: location
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = {
  parent: serviceBus
  name: queueName
  properties: {
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    requiresDuplicateDetection: false
    requiresSession: false
  }
}

// ---------------------------------------------------------------- Cosmos DB for MongoDB

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: names.cosmos
  location: location
  kind: 'MongoDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    // The mongodb crate 3.x needs wire version 9+ (MongoDB 4.4); Cosmos answers `hello` with the
    // wire version of this serverVersion, so 4.2 (wire 8) cannot be used. 6.0 = wire 17.
    apiProperties: {
      serverVersion: '6.0'
    }
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    minimalTlsVersion: 'Tls12'
  }
}

resource mongoDb 'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases@2024-05-15' = {
  parent: cosmos
  name: mongoDatabase
  properties: {
    resource: {
      id: mongoDatabase
    }
  }
}

// The handler creates its other indexes ({seq: -1}, {state: 1, seq: -1}) at start; Cosmos needs
// them to sort. The `_id` index must be declared here.
resource tasksCollection 'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections@2024-05-15' = {
  parent: mongoDb
  name: mongoCollection
  properties: {
    resource: {
      id: mongoCollection
      indexes: [
        {
          key: {
            keys: [
              '_id'
            ]
          }
        }
      ]
    }
  }
}

// ---------------------------------------------------------------- Monitoring

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: names.logs
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.insights
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

// ---------------------------------------------------------------- Storage (Functions host)

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: take(names.storage, 24)
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${storage.listKeys().keys[0].value}'

// FC1: the deployment package lives in this blob container (functionAppConfig.deployment).
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-01-01' = if (isFlex) {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = if (isFlex) {
  parent: blobService
  name: names.deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

// ---------------------------------------------------------------- Registry + pull identity

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: take(names.registry, 50)
  location: location
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
  }
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.pullIdentity
  location: location
}

// Built-in role ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles),
// always turned into ids with subscriptionResourceId().
var roles = {
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

resource pullIdentityAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, pullIdentity.id, roles.acrPull)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: pullIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- Function App

// Plan shapes from the official quickstarts (Azure/azure-quickstart-templates
// quickstarts/microsoft.web/function-app-flex-consumption, function-app-linux-consumption,
// function-app-premium-plan): FC1 kind 'functionapp' tier FlexConsumption; Y1 tier Dynamic;
// EP1 kind 'elastic' tier ElasticPremium with maximumElasticWorkerCount; Linux: reserved.
var planShapes = {
  FC1: {
    kind: 'functionapp'
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    properties: {
      reserved: true
    }
  }
  Y1: {
    kind: 'functionapp'
    sku: {
      name: 'Y1'
      tier: 'Dynamic'
    }
    properties: {
      reserved: true
    }
  }
  EP1: {
    kind: 'elastic'
    sku: {
      name: 'EP1'
      tier: 'ElasticPremium'
      family: 'EP'
    }
    properties: {
      reserved: true
      maximumElasticWorkerCount: 20
    }
  }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: names.plan
  location: location
  kind: planShapes[planSku].kind
  sku: planShapes[planSku].sku
  properties: planShapes[planSku].properties
}

// Settings every plan gets.
var commonSettings = [
  { name: 'AzureWebJobsStorage', value: storageConnection }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  // Identity-based Service Bus connection for the trigger and the output bindings.
  { name: 'ServiceBusConnection__fullyQualifiedNamespace', value: '${serviceBus.name}.servicebus.windows.net' }
  { name: 'EDA_QUEUE_NAME', value: queue.name }
  { name: 'EDA_RECONCILE_SCHEDULE', value: reconcileSchedule }
  { name: 'EDA_MAX_DELIVERIES', value: string(maxDeliveryCount) }
  { name: 'EDA_CONCURRENCY', value: string(concurrency) }
  { name: 'EDA_CPU', value: cpu }
  { name: 'EDA_MEMORY_MB', value: string(memoryMb) }
  // Cosmos DB for MongoDB (RU) has no Entra ID data-plane auth: its connection string is
  // the one secret in these settings (move it to a Key Vault reference if you have one).
  { name: 'EDA_MONGO_URI', value: cosmos.listConnectionStrings().connectionStrings[0].connectionString }
  { name: 'EDA_MONGO_DB', value: mongoDatabase }
  { name: 'EDA_MONGO_COLLECTION', value: tasksCollection.name }
  { name: 'EDA_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'EDA_RESOURCE_GROUP', value: resourceGroup().name }
  { name: 'EDA_LOCATION', value: location }
  { name: 'EDA_IMAGE', value: '${registry.properties.loginServer}/${workerImageTag}' }
  { name: 'EDA_REGISTRY_SERVER', value: registry.properties.loginServer }
  { name: 'EDA_REGISTRY_IDENTITY', value: pullIdentity.id }
  { name: 'EDA_API_KEY', value: apiKey }
]

// The shape and flow of work (issue 12): per-key caps, backpressure, images, retention and
// completion webhooks. Settings left empty are not written (an empty list means "none" anyway).
var flowSettings = concat(
  [
    { name: 'EDA_KEY_CAP', value: string(keyCap) }
    { name: 'EDA_MAX_QUEUED', value: string(maxQueued) }
    { name: 'EDA_MAX_QUEUED_PER_KEY', value: string(maxQueuedPerKey) }
    { name: 'EDA_RETENTION_SECS', value: string(retentionSecs) }
    { name: 'EDA_WEBHOOK_EVENTS', value: webhookEvents }
  ],
  empty(keyCaps) ? [] : [{ name: 'EDA_KEY_CAPS', value: keyCaps }],
  empty(allowedImages) ? [] : [{ name: 'EDA_ALLOWED_IMAGES', value: allowedImages }],
  empty(webhookUrls) ? [] : [{ name: 'EDA_WEBHOOK_URLS', value: webhookUrls }],
  empty(webhookSecret) ? [] : [{ name: 'EDA_WEBHOOK_SECRET', value: webhookSecret }]
)

// Warm starts (handler `--aci-standby-pool`, runtime/aci/standby.rs).
var standbySettings = useStandby ? [
  { name: 'EDA_ACI_STANDBY_POOL', value: standbyPool.id }
  { name: 'EDA_ACI_GROUP_PROFILE', value: workerProfile.id }
  { name: 'EDA_ACI_GROUP_PROFILE_REVISION', value: '1' }
] : []

// Y1/EP1 only: on FC1 these are deprecated (FUNCTIONS_WORKER_RUNTIME and the extension version
// move to functionAppConfig.runtime; there is no content share), per
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
var classicSettings = concat(
  [
    { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
    { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
    { name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING', value: storageConnection }
    { name: 'WEBSITE_CONTENTSHARE', value: toLower(names.app) }
  ],
  empty(packageUri) ? [] : [{ name: 'WEBSITE_RUN_FROM_PACKAGE', value: packageUri }]
)

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: names.app
  location: location
  kind: 'functionapp,linux'
  dependsOn: [
    deploymentContainer // FC1: the package container exists before the app points at it
  ]
  identity: {
    type: 'SystemAssigned'
  }
  properties: union(
    {
      serverFarmId: plan.id
      reserved: true // Linux, as the quickstarts set it on the site too
      httpsOnly: true
      siteConfig: union(
        {
          minTlsVersion: '1.2'
          ftpsState: 'Disabled'
          appSettings: isFlex ? concat(commonSettings, flowSettings, standbySettings) : concat(commonSettings, flowSettings, standbySettings, classicSettings)
        },
        isFlex ? {} : { linuxFxVersion: '' }
      )
    },
    isFlex
      ? {
          // Flex Consumption runs custom handlers: the Microsoft.Web spec's FunctionsRuntime.name
          // lists "dotnet-isolated, node, java, powershell, python, custom", and 'custom' is in
          // the Flex stacks the platform publishes (Az.Functions 4.3.0,
          // FunctionsStackFlexData/*/custom.json). The version string is not documented there:
          // check what your region accepts before deploying:
          //   az functionapp list-flexconsumption-runtimes -l <region> --runtime custom
          functionAppConfig: {
            deployment: {
              storage: {
                type: 'blobContainer'
                value: '${storage.properties.primaryEndpoints.blob}${names.deploymentContainer}'
                authentication: {
                  type: 'SystemAssignedIdentity'
                }
              }
            }
            scaleAndConcurrency: {
              maximumInstanceCount: maximumInstanceCount
              instanceMemoryMB: instanceMemoryMB
            }
            runtime: {
              name: 'custom'
              version: '1.0'
            }
          }
        }
      : {}
  )
}

// FC1: the app reads its package from the deployment container with its own identity.
resource appReadsPackage 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (isFlex) {
  scope: storage
  name: guid(storage.id, app.id, roles.storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The least the handler needs on this resource group: its container groups (create, read,
// stop, delete, logs), their metrics, and reading the status of the create operations.
// Role names must be unique in the tenant: resource group names are not (the same name exists in
// other subscriptions), so the name carries a hash of this resource group's id.
resource containerGroupsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'eda-container-groups-operator')
  properties: {
    roleName: 'EDA container groups operator ${uniqueString(resourceGroup().id)}'
    description: 'Create, watch and delete container groups and read their metrics in one resource group.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.ContainerInstance/containerGroups/*'
          'Microsoft.ContainerInstance/locations/*/read'
          // Warm starts: the handler reads the worker profile (which tasks fit) and names the
          // standby pool in the claim.
          'Microsoft.ContainerInstance/containerGroupProfiles/read'
          'Microsoft.StandbyPool/standbyContainerGroupPools/read'
          'Microsoft.Insights/metrics/read'
          'Microsoft.Insights/metricDefinitions/read'
        ]
        notActions: []
      }
    ]
  }
}

// The id of a role definition is subscription-level even when it is deployed into a resource
// group: `containerGroupsRole.id` would carry the resource group, so it is built with
// subscriptionResourceId(). Referencing the role by name keeps the dependency (the assignment
// waits for the definition). A brand-new definition can take a moment to replicate; if the first
// deployment fails with RoleDefinitionDoesNotExist, run it again (it is idempotent).
resource appContainerGroups 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, app.id, containerGroupsRole.name)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', containerGroupsRole.name)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Attaching the pull identity to a container group needs .../assign/action on that identity.
resource appAssignsPullIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: pullIdentity
  name: guid(pullIdentity.id, app.id, roles.managedIdentityOperator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.managedIdentityOperator)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Service Bus, on the work queue only. The Functions docs (MicrosoftDocs/azure-docs
// articles/azure-functions/functions-bindings-service-bus.md, "Grant permission to the identity")
// list Azure Service Bus Data Receiver and Data Owner for the trigger (the runtime-driven scale
// controller needs the Manage claim, which only Data Owner has) and Data Sender for the output
// binding.
resource appReceives 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: queue
  name: guid(queue.id, app.id, roles.serviceBusDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appOwnsQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: queue
  name: guid(queue.id, app.id, roles.serviceBusDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appSends 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: queue
  name: guid(queue.id, app.id, roles.serviceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- Warm starts (opt-in)

// The worker as the standby pool starts it: the task's own image and shape, waiting for its
// assignment in the config map mount (model/src/standby.rs). Sources:
// https://learn.microsoft.com/azure/container-instances/container-instances-standby-pool-create
// and container-instances-config-map ("/mnt/configmap/<container>/<key>").
resource workerProfile 'Microsoft.ContainerInstance/containerGroupProfiles@2024-05-01-preview' = if (useStandby) {
  name: names.workerProfile
  location: location
  properties: {
    sku: 'Standard'
    osType: 'Linux'
    restartPolicy: 'Never'
    containers: [
      {
        name: 'worker'
        properties: {
          image: '${registry.properties.loginServer}/${workerImageTag}'
          command: [ '/worker' ]
          environmentVariables: [
            { name: 'EDA_CONFIGMAP_DIR', value: '/mnt/configmap/worker' }
          ]
          resources: {
            requests: {
              cpu: json(cpu)
              memoryInGB: json('${memoryTenthsGb / 10}.${memoryTenthsGb % 10}')
            }
          }
        }
      }
    ]
    imageRegistryCredentials: [
      { server: registry.properties.loginServer, identity: pullIdentity.id }
    ]
  }
}

resource standbyPool 'Microsoft.StandbyPool/standbyContainerGroupPools@2025-03-01' = if (useStandby) {
  name: names.standbyPool
  location: location
  properties: {
    elasticityProfile: {
      maxReadyCapacity: standbyPoolSize
      refillPolicy: 'always'
    }
    containerGroupProperties: {
      containerGroupProfile: {
        id: workerProfile.id
        revision: 1
      }
    }
  }
  dependsOn: [ standbyProviderRoles, standbyProviderPulls ]
}

// The roles the docs ask for on the Standby Pool Resource Provider
// (container-instances-standby-pool-configure-permissions), on this resource group:
// Azure Container Instances Contributor, Standby Container Group Pool Contributor, Network
// Contributor, Managed Identity Operator (it attaches the pull identity), and AcrPull on the
// registry.
var standbyProviderRoleIds = [
  '5d977122-f97e-4b4d-a52f-6b43003ddb4d' // Azure Container Instances Contributor
  '39fcb0de-8844-4706-b050-c28ddbe3ff83' // Standby Container Group Pool Contributor
  '4d97b98b-1d4f-4787-a291-c67834d212e7' // Network Contributor
  roles.managedIdentityOperator
]

resource standbyProviderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in (useStandby ? standbyProviderRoleIds : []): {
  name: guid(resourceGroup().id, standbyPoolProviderObjectId, role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: standbyPoolProviderObjectId
    principalType: 'ServicePrincipal'
  }
}]

resource standbyProviderPulls 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useStandby) {
  scope: registry
  name: guid(registry.id, standbyPoolProviderObjectId, roles.acrPull)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: standbyPoolProviderObjectId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- Outputs

@description('The dashboard (served by the Function App).')
output dashboardUrl string = 'https://${app.properties.defaultHostName}/'

@description('The Function App to deploy the zip to.')
output functionAppName string = app.name

@description('Where to push the worker image.')
output registryLoginServer string = registry.properties.loginServer

@description('The work queue; other producers may drop plain-text messages on it.')
output queue string = queue.name

@description('The Service Bus namespace.')
output serviceBusNamespace string = serviceBus.name

@description('The plan the app runs on.')
output plan string = planSku
