/*
 * The shared front-door suite (behaviour.case.ts) against every front door.
 */
import { frontDoorSuite } from './behaviour.case.js';
import { caddyDoor, expressDoor, fastifyDoor, forwardAuthDoor, libraryDoor, nginxDoor, proxyDoor } from './adapters.js';
import { envoyGrpcDoor } from '../forward-auth/envoy-grpc.door.js';

frontDoorSuite(proxyDoor);
frontDoorSuite(libraryDoor);
frontDoorSuite(forwardAuthDoor);
frontDoorSuite(envoyGrpcDoor);
frontDoorSuite(caddyDoor);
frontDoorSuite(expressDoor);
frontDoorSuite(fastifyDoor);
frontDoorSuite(nginxDoor);
