/*
 * The shared front-door suite (behaviour.case.ts) against every front door.
 */
import { frontDoorSuite } from './behaviour.case.js';
import { libraryDoor, proxyDoor } from './adapters.js';

frontDoorSuite(proxyDoor);
frontDoorSuite(libraryDoor);
