// `npm run test:unit`: the tests that run in-process against src/ (parsers, protocol state
// machines, the registry, the simulator, the pipeline's transports on socket pairs): no built
// dist/main.js, no root, no VMs. Seconds, and usable in watch mode:
//   npx vitest --config vitest.unit.config.ts
// `npm test` still runs everything (vitest.config.ts), these included.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/channels-poll-slots.test.ts',
      'test/guest-fuzz.test.ts',
      'test/guest-protocols.test.ts',
      'test/guest-qga-poller.test.ts',
      'test/guest-qga-unchanged.test.ts',
      'test/guest-registry.test.ts',
      'test/guest-sanitize.test.ts',
      'test/load-stats-json.test.ts',
      'test/metrics-early.test.ts',
      'test/route-netlink.test.ts',
      'test/route-parse.test.ts',
      'test/rpc-backpressure.test.ts',
      'test/rpc-registry.test.ts',
      'test/sim-agents.test.ts',
      'test/stomp-events.test.ts',
      'test/stomp-frame.test.ts',
      'test/stomp-transport.test.ts',
      'test/vm-libvirt-wire.test.ts',
    ],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    reporters: ['default'],
  },
});
