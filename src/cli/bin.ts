#!/usr/bin/env node
// The `kennwilliamson-db` bin: what a service runs at release time, with plain node, from
// the installed package. Only commands whose code ships in the package belong here; the
// repository's own (embedded server, codegen) are in dev/.
import { shippedCommands } from './commands/shipped-commands.js';
import { runCommands } from './run-commands.js';

runCommands('kennwilliamson-db', shippedCommands, process.argv.slice(2));
