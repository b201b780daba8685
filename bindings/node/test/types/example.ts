// Type-checked by `tsc --noEmit --strict` (test/types.test.js): uses every
// export of the package the way the README shows.
import * as fs from 'node:fs';
import * as busbar from '../..';
import { BusbarError, Endpoint, LabelOp, Message, Region } from '../..';

async function main(): Promise<void> {
  const ep: Endpoint = await busbar.join({ bus: 'com.example', label: ['renderer', 'gpu'], token: 't', timeoutMs: 1000, spinUs: 50 });
  const region: Region = Region.create(4096);
  new Uint8Array(region.buffer).set([1, 2, 3]);
  const fd: number = fs.openSync('/dev/null', 'r');
  await ep.send('camera & !mock', Buffer.from('hi'), {
    multicast: false, ttlMs: 0, format: 0, fds: [fd], regions: [region], backpressure: 'fail-fast',
  });
  await ep.send(LabelOp.leaf('camera').and(LabelOp.leaf('mock').not()), new Uint8Array(4));
  await ep.send({ endpoint: ep.id }, 'to myself', { requireReceiver: true });

  const ac = new AbortController();
  const m: Message = await ep.recv({ timeoutMs: 500, signal: ac.signal });
  const data: Buffer = m.data;
  const format: number = m.format;
  const fds: number[] = m.fds.map((f) => f.take());
  for (const r of m.regions) console.log(r.size, r.refCount, r.read(0, 1).length, r.closed);
  console.log(data, format, fds, m.source, m.selector, m.multicast, m.isRequest);
  if (m.isRequest) await ep.reply(m, 'answer', { format: 1 });
  m.close();

  const answer: Message = await ep.request('server', 'question?', { timeoutMs: 1000, format: 2 });
  console.log(answer.data.toString());

  const batch: Message[] = await ep.recvBatch({ max: 16, timeoutMs: 100, signal: ac.signal });
  console.log(batch.length, batch[0]?.data.length);

  for await (const next of ep) {
    console.log(next.data.length);
    break;
  }
  for (const e of ep.endpoints()) console.log(e.id, e.label.join(','), e.pid, e.uid, e.isController, e.queuedBytes);
  console.log(ep.id, ep.isController, ep.closed);

  try {
    await ep.recv({ timeoutMs: 0 });
  } catch (e) {
    if (e instanceof BusbarError && e.code === 'TIMEOUT') console.log(e.message);
  }
  const codes: ReadonlySet<busbar.ErrorCode> = busbar.CODES;
  const op: LabelOp = LabelOp.parse('a | b').or('c').and(LabelOp.true()).or(LabelOp.false());
  console.log(codes.size, op.toString(), op.matches(['a']));
  region.write('x', 1);
  region.close();
  ep.close();
}

void main();
