// The request pipeline in-process, with a real MethodRegistry: at --max-in-flight it pauses the
// transport's input and resumes it below the limit; a request counts until its reply is written;
// messages read while paused wait their turn in order, and none is refused.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RequestPipeline, type Deliver } from '../src/rpc/pipeline.js';
import { string } from '../src/rpc/params.js';
import { MethodRegistry, type Reply, type Session } from '../src/rpc/registry.js';

const session: Session = { id: 1, peer: 'test', subscribeEvents: () => {}, unsubscribeEvents: () => {} };

function setUp(maxInFlight: number) {
  const registry = new MethodRegistry(pino({ level: 'silent' }));
  const started: string[] = [];
  const gates = new Map<string, () => void>();
  registry.add([
    {
      name: 'Test.wait',
      params: [{ name: 'tag', required: true, check: string }],
      handler: (p) => {
        const tag = p.tag as string;
        started.push(tag);
        return new Promise<string>((resolve) => gates.set(tag, () => resolve(tag)));
      },
    },
  ]);
  const input: string[] = [];
  const replies: Reply[] = [];
  const unwritten: (() => void)[] = [];
  const pipeline = new RequestPipeline({
    registry,
    limits: { maxBatch: 10, maxInFlight },
    session,
    input: { pause: () => input.push('pause'), resume: () => input.push('resume') },
    log: pino({ level: 'silent' }),
    notJson: 'the frame',
  });
  // Replies are "written" only when the test says so, like a peer that reads late.
  const deliver: Deliver = (reply, written) => {
    replies.push(reply);
    unwritten.push(written);
  };
  const request = (tag: string): string =>
    JSON.stringify({ jsonrpc: '2.0', id: tag, method: 'Test.wait', params: { tag } });
  return { pipeline, started, gates, input, replies, unwritten, deliver, request };
}

/** Lets promise chains and setImmediate callbacks run. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

describe('RequestPipeline backpressure', () => {
  it('pauses input at the limit, keeps later messages in order, and resumes once replies are written', async () => {
    const t = setUp(2);
    for (const tag of ['a', 'b', 'c', 'd']) t.pipeline.submitText(t.request(tag), t.deliver);
    await settle();
    expect(t.started).toEqual(['a', 'b']);
    expect(t.input).toEqual(['pause']);
    expect(t.pipeline.inFlight).toBe(4);

    t.gates.get('a')!();
    await settle();
    // Answered but not written yet: still in flight, nothing more starts.
    expect(t.replies).toEqual([{ jsonrpc: '2.0', id: 'a', result: 'a' }]);
    expect(t.started).toEqual(['a', 'b']);

    t.unwritten.shift()!();
    await settle();
    expect(t.started).toEqual(['a', 'b', 'c']);
    expect(t.input).toEqual(['pause']);

    for (const tag of ['b', 'c']) t.gates.get(tag)!();
    await settle();
    for (const w of t.unwritten.splice(0)) w();
    await settle();
    expect(t.started).toEqual(['a', 'b', 'c', 'd']);
    // d alone in flight, nothing waiting: below the limit of 2, reading goes on.
    expect(t.input).toEqual(['pause', 'resume']);

    const idle = t.pipeline.whenIdle();
    t.gates.get('d')!();
    await settle();
    t.unwritten.shift()!();
    await idle;
    expect(t.replies.map((r) => (r as { id: string }).id)).toEqual(['a', 'b', 'c', 'd']);
    expect(t.pipeline.inFlight).toBe(0);
  });

  it('refuses only a batch that could never fit, with one -32000 per request id and nothing for notifications', async () => {
    const t = setUp(2);
    const batch = [
      JSON.parse(t.request('x')) as object,
      { jsonrpc: '2.0', method: 'Test.wait', params: { tag: 'n' } },
      JSON.parse(t.request('y')) as object,
    ];
    t.pipeline.submit(batch, t.deliver);
    await settle();
    expect(t.started).toEqual([]);
    const busy = { code: -32000, message: 'Server busy: more than 2 requests in flight on this connection' };
    expect(t.replies).toEqual([
      [
        { jsonrpc: '2.0', id: 'x', error: busy },
        { jsonrpc: '2.0', id: 'y', error: busy },
      ],
    ]);
  });

  it('answers text that is not JSON with -32700 in turn, and forgets everything once closed', async () => {
    const t = setUp(1);
    t.pipeline.submitText(t.request('a'), t.deliver);
    t.pipeline.submitText('{oops', t.deliver);
    await settle();
    expect(t.replies).toEqual([]);
    t.gates.get('a')!();
    await settle();
    t.unwritten.shift()!();
    await settle();
    expect(t.replies[1]).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32700, message: 'Parse error: the frame is not valid JSON' },
    });
    t.pipeline.submitText(t.request('b'), t.deliver);
    const idle = t.pipeline.whenIdle();
    t.pipeline.close();
    await idle;
    t.pipeline.submitText(t.request('c'), t.deliver);
    await settle();
    expect(t.started).toEqual(['a']);
  });
});
