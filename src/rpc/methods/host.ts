// Host.* methods that need nothing but the connection: liveness and event subscription.
import { stringArray } from '../params.js';
import type { MethodDef } from '../registry.js';

export function hostMethods(): MethodDef[] {
  return [
    { name: 'Host.ping2', aliases: ['ping'], params: [], handler: () => true },
    {
      name: 'Host.subscribeEvents',
      params: [{ name: 'prefixes', required: false, check: stringArray }],
      handler: (p, session) => {
        session.subscribeEvents((p.prefixes as string[] | undefined) ?? null);
        return true;
      },
    },
    {
      name: 'Host.unsubscribeEvents',
      params: [],
      handler: (_p, session) => {
        session.unsubscribeEvents();
        return true;
      },
    },
  ];
}
