/*
 * The shared front-door suite (behaviour.case.ts) against every front door.
 */
import { frontDoorSuite } from './behaviour.case.js';
import { expressDoor, fastifyDoor, forwardAuthDoor, libraryDoor, proxyDoor } from './adapters.js';

frontDoorSuite(proxyDoor);
frontDoorSuite(libraryDoor);
frontDoorSuite(forwardAuthDoor);
frontDoorSuite(expressDoor);
frontDoorSuite(fastifyDoor);
