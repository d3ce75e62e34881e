// Plain-text tables for a terminal: columns sized to their content, the flexible ones shrunk
// (cut with "…") until a line fits the width. Pure: rows in, text out. Widths count UTF-16 code
// units, which is right for what these tables hold (names, addresses, MACs).

export interface Column {
  header: string;
  /** May be cut to make the table fit; fixed columns never are. */
  flex?: boolean;
  /** The narrowest a flexible column is cut to. */
  min?: number;
}

export interface Row {
  cells: readonly string[];
  /** Lines printed indented under the row (addresses, marks). */
  detail?: readonly string[];
}

function cut(text: string, to: number): string {
  return text.length <= to ? text : `${text.slice(0, Math.max(0, to - 1))}…`;
}

/** Renders `rows` under `columns`, two spaces apart, at most `maxWidth` wide when the fixed columns allow. */
export function renderTable(columns: readonly Column[], rows: readonly Row[], maxWidth = 80): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r.cells[i] ?? '').length)));
  const total = (): number => widths.reduce((a, b) => a + b, 0) + 2 * (columns.length - 1);
  // Shrink the widest flexible column, one character at a time, until the table fits.
  while (total() > maxWidth) {
    let widest = -1;
    let widestWidth = 0;
    columns.forEach((c, i) => {
      const w = widths[i] ?? 0;
      if (c.flex && w > (c.min ?? 4) && w > widestWidth) {
        widest = i;
        widestWidth = w;
      }
    });
    if (widest === -1) break;
    widths[widest] = widestWidth - 1;
  }
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => {
        const w = widths[i] ?? 0;
        const text = cut(cell, w);
        return i === cells.length - 1 ? text : text.padEnd(w);
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
