export { edgeConfigSchema, loadEdgeConfig, type EdgeConfig } from './config';
export { integrationsRoutes, type IntegrationsRoute } from './integrations-api';
export { startEdge, type RunningEdge } from './start-edge';
