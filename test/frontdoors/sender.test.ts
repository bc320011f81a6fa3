/*
 * Sender-constrained tokens (behaviour.case.ts senderSuite) against every front door.
 */
import { senderSuite } from './behaviour.case.js';
import { caddyDoor, expressDoor, fastifyDoor, forwardAuthDoor, libraryDoor, nginxDoor, proxyDoor } from './adapters.js';
import { envoyGrpcDoor } from '../forward-auth/envoy-grpc.door.js';

senderSuite(proxyDoor);
senderSuite(libraryDoor);
senderSuite(forwardAuthDoor);
senderSuite(envoyGrpcDoor);
senderSuite(caddyDoor);
senderSuite(expressDoor);
senderSuite(fastifyDoor);
senderSuite(nginxDoor);
