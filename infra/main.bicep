// Every Azure resource of Event-Driven ACI, deployed into one resource group:
//
//   az group create -n eda-rg -l westeurope
//   az deployment group create -g eda-rg -f infra/main.bicep -p prefix=eda<unique>
//
// NOT COMPILED HERE: no `bicep` binary could be installed on the machine this was written on.
// It was written against the documented resource types and API versions; run
// `az bicep build -f infra/main.bicep` before the first deployment (docs/AZURE.md).
//
// What it makes:
//   - Service Bus namespace + work queue (max delivery count, lock duration, dead-lettering)
//   - Cosmos DB account (API for MongoDB), database and tasks collection
//   - Storage account (the Functions host's own state), Log Analytics + Application Insights
//   - Container registry for the worker image, and a user-assigned identity with AcrPull that
//     the container groups pull with (no registry password anywhere)
//   - Linux Function App (custom handler) with a system-assigned identity and its app settings
//   - Roles for the Function App's identity: a custom role on this resource group that can
//     manage container groups and read their metrics, and nothing else (Contributor would also
//     let it change every other resource here); Service Bus data sender + receiver on the
//     namespace (identity-based trigger/binding connection, no Service Bus key); Managed
//     Identity Operator on the pull identity only (to attach it to container groups).

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

@description('How often ReconcileTimer runs (NCRONTAB with seconds).')
param reconcileSchedule string = '*/10 * * * * *'

@description('API key the /api routes require (Authorization: Bearer or x-api-key). Default: a new random value; read it back with `az functionapp config appsettings list`.')
@secure()
param apiKey string = newGuid()

@description('Function App plan: Y1 (Consumption) or EP1 (Elastic Premium).')
@allowed([
  'Y1'
  'EP1'
])
param planSku string = 'Y1'

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
}
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
    apiProperties: {
      serverVersion: '4.2'
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

var roles = {
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
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

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: names.plan
  location: location
  kind: 'functionapp'
  sku: planSku == 'Y1'
    ? {
        name: 'Y1'
        tier: 'Dynamic'
      }
    : {
        name: 'EP1'
        tier: 'ElasticPremium'
      }
  properties: {
    reserved: true // Linux
  }
}

resource app 'Microsoft.Web/sites@2023-12-01' = {
  name: names.app
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      linuxFxVersion: ''
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        { name: 'FUNCTIONS_EXTENSION_VERSION', value: '~4' }
        { name: 'FUNCTIONS_WORKER_RUNTIME', value: 'custom' }
        { name: 'AzureWebJobsStorage', value: storageConnection }
        { name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING', value: storageConnection }
        { name: 'WEBSITE_CONTENTSHARE', value: toLower(names.app) }
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
    }
  }
}

// The least the handler needs on this resource group: its container groups (create, read,
// stop, delete, logs), their metrics, and reading the status of the create operations.
resource containerGroupsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'eda-container-groups-operator')
  properties: {
    roleName: 'EDA container groups operator (${resourceGroup().name})'
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
          'Microsoft.Insights/metrics/read'
          'Microsoft.Insights/metricDefinitions/read'
        ]
        notActions: []
      }
    ]
  }
}

resource appContainerGroups 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, app.id, containerGroupsRole.id)
  properties: {
    roleDefinitionId: containerGroupsRole.id
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

resource appReceives 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: serviceBus
  name: guid(serviceBus.id, app.id, roles.serviceBusDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: app.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appSends 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: serviceBus
  name: guid(serviceBus.id, app.id, roles.serviceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: app.identity.principalId
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
