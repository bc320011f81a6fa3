import { middlewareSuite } from './suite.js';
import { startExpressApp } from './apps.js';

middlewareSuite('Express', startExpressApp);
