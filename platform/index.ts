/**
 * Public face of the platform: the composition of one node (createPlatform), its configuration (loadConfig),
 * and a whole cluster on one machine (startCluster: engines, several nodes, the edge, a simulated city).
 */
export { type Config, type ConfigInput, describeOptions, loadConfig } from './config.ts';
export { createPlatform, type Platform, type PlatformAddresses, VERSION } from './platform.ts';
export {
  type ClusterHandle,
  type ClusterNode,
  type ClusterRabbit,
  type NodeResponse,
  startCluster,
  type StartClusterOptions,
} from './cluster.ts';
