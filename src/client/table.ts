// Plain-text tables for a terminal: columns sized to their content, the flexible ones shrunk
// (cut with "…") until a line fits the width. Pure: rows in, text out.

export interface Column {
  header: string;
  /** May be cut to make the table fit; fixed columns never are. */
  flex?: boolean;
  /** The narrowest a flexible column is cut to. */
  min?: number;
}

/** Display width: one per code point (what these tables hold: ASCII, addresses, guest names). */
const width = (text: string): number => [...text].length;

function cut(text: string, to: number): string {
  const chars = [...text];
  return chars.length <= to ? text : `${chars.slice(0, Math.max(0, to - 1)).join('')}…`;
}

/**
 * Renders `rows` under `columns`, two spaces apart, at most `maxWidth` columns wide when the
 * fixed columns allow it. A row may carry `detail` lines, printed indented under it.
 */
export function renderTable(columns: readonly Column[], rows: readonly { cells: readonly string[]; detail?: readonly string[] }[], maxWidth = 80): string {
  const widths = columns.map((c, i) => Math.max(width(c.header), ...rows.map((r) => width(r.cells[i] ?? ''))));
  const total = (): number => widths.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1);
  // Shrink the widest flexible column, one character at a time, until the table fits.
  while (total() > maxWidth) {
    let widest = -1;
    columns.forEach((c, i) => {
      if (c.flex && widths[i]! > (c.min ?? 4) && (widest === -1 || widths[i]! > widths[widest]!)) widest = i;
    });
    if (widest === -1) break;
    widths[widest]!--;
  }
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => {
        const text = cut(cell, widths[i]!);
        return i === cells.length - 1 ? text : text + ' '.repeat(widths[i]! - width(text));
      })
      .join('  ')
      .trimEnd();
  const out = [line(columns.map((c) => c.header))];
  for (const r of rows) {
    out.push(line(columns.map((_c, i) => r.cells[i] ?? '')));
    for (const d of r.detail ?? []) out.push(cut(`  ${d}`, maxWidth));
  }
  return out.join('\n') + '\n';
}
