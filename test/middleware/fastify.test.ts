import { middlewareSuite } from './suite.js';
import { startFastifyApp } from './apps.js';

middlewareSuite('Fastify', startFastifyApp);
