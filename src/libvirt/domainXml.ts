// The few facts this daemon needs from a domain's live XML, pure: its vNICs (host device, MAC,
// model, bridge or network, alias). libvirt writes its XML in one regular form (attributes in
// single quotes, entities escaped), so a small reader of `<interface>` elements does; anything it
// cannot read is left out rather than guessed. The XML comes from libvirtd, not from the guest,
// but it carries names an administrator chose: values are unescaped and capped.

export interface DomainNic {
  /** `<target dev>`: the host device (vnet3); "" when libvirt gave none (not running yet). */
  device: string;
  /** `<mac address>`, lower-case. */
  mac: string;
  /** `<model type>`: virtio, e1000, rtl8139, ...; "" when absent. */
  model: string;
  /** `<source bridge>` or `<source network>`; "" when neither. */
  bridge: string;
  /** `<alias name>` (oVirt names it ua-<device id>). */
  alias: string;
  /** The interface's `type` attribute (bridge, network, ethernet, user, hostdev, ...). */
  type: string;
}

const MAX_VALUE = 256;
const MAX_NICS = 128;

function unescape(v: string): string {
  return v
    .replace(/&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
      switch (e) {
        case 'lt':
          return '<';
        case 'gt':
          return '>';
        case 'quot':
          return '"';
        case 'apos':
          return "'";
        case 'amp':
          return '&';
        default: {
          const code = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
          return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '\uFFFD';
        }
      }
    })
    .slice(0, MAX_VALUE);
}

/** The value of attribute `name` in one start tag's text, or "". */
function attr(tag: string, name: string): string {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:'([^']*)'|"([^"]*)")`).exec(tag);
  return m ? unescape(m[1] ?? m[2] ?? '') : '';
}

/** The first `<name .../>` or `<name ...>` start tag inside `body`, or "". */
function childTag(body: string, name: string): string {
  const m = new RegExp(`<${name}(\\s[^>]*)?/?>`).exec(body);
  return m ? m[0] : '';
}

/** The domain's interfaces in document order (devices section only; hostdev NICs left out, as VDSM does). */
export function domainNics(xml: string): DomainNic[] {
  const devices = /<devices>([\s\S]*?)<\/devices>/.exec(xml)?.[1] ?? '';
  const out: DomainNic[] = [];
  const re = /<interface(\s[^>]*)?>([\s\S]*?)<\/interface>/g;
  for (let m = re.exec(devices); m && out.length < MAX_NICS; m = re.exec(devices)) {
    const open = `<interface${m[1] ?? ''}>`;
    const body = m[2] ?? '';
    const type = attr(open, 'type');
    if (type === 'hostdev') continue;
    const source = childTag(body, 'source');
    out.push({
      device: attr(childTag(body, 'target'), 'dev'),
      mac: attr(childTag(body, 'mac'), 'address').toLowerCase(),
      model: attr(childTag(body, 'model'), 'type'),
      bridge: attr(source, 'bridge') || attr(source, 'network'),
      alias: attr(childTag(body, 'alias'), 'name'),
      type,
    });
  }
  return out;
}
