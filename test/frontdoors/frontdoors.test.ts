/*
 * The shared front-door suite (behaviour.case.ts) against every front door.
 */
import { frontDoorSuite } from './behaviour.case.js';
import { forwardAuthDoor, libraryDoor, proxyDoor } from './adapters.js';

frontDoorSuite(proxyDoor);
frontDoorSuite(libraryDoor);
frontDoorSuite(forwardAuthDoor);
