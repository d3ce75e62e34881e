// V8 doubles its young generation (up to 16 MiB per semi-space, 32 MiB of RSS) whenever enough
// objects have survived scavenges since the last growth, and on a daemon that allocates steadily
// but slowly (a thousand polled guests) it gets there and stays: at 1,000 VMs that was 20 MiB of
// the resident set, more than all the VMs' live objects. The initial size (1 MiB) is plenty for
// what a poll or a call allocates; keeping it costs a few more, equally cheap, scavenges.
// `--max-semi-space-size` cannot be changed once the heap exists; the growth factor is read
// each time V8 considers growing, so setting it here works without a node flag.
import v8 from 'node:v8';

export function keepYoungGenerationSmall(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
