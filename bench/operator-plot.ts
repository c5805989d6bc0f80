// A dependency-free SVG line chart for the operator benchmark: one polyline per series.
export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  /** Drawn dashed (a second run of the same side). */
  dash?: boolean;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
}

export function plotSvg(title: string, xLabel: string, yLabel: string, series: Series[]): string {
  const W = 720,
    H = 420,
    L = 70,
    R = 20,
    T = 40,
    B = 90;
  const xMax = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const yMax = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (v: number) => L + (v / xMax) * (W - L - R);
  const y = (v: number) => H - B - (v / yMax) * (H - T - B);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  const xs = niceStep(xMax, 8);
  for (let v = 0; v <= xMax + 1e-9; v += xs)
    out.push(
      `<line x1="${x(v)}" y1="${T}" x2="${x(v)}" y2="${H - B}" stroke="#eee"/>`,
      `<text x="${x(v)}" y="${H - B + 16}" text-anchor="middle">${Number(v.toFixed(3))}</text>`,
    );
  const ys = niceStep(yMax, 6);
  for (let v = 0; v <= yMax + 1e-9; v += ys)
    out.push(
      `<line x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${Number(v.toFixed(3))}</text>`,
    );
  out.push(
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  );
  out.push(`<text x="${(L + W - R) / 2}" y="${H - B + 36}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(
    `<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    const pts = [[0, 0] as [number, number], ...s.points]
      .map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`)
      .join(" ");
    const dash = s.dash ? ` stroke-dasharray="6 4"` : "";
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${pts}"/>`);
    const ly = H - 30 + i * 16 - (series.length - 1) * 8;
    out.push(
      `<line x1="${L}" y1="${ly}" x2="${L + 24}" y2="${ly}" stroke="${s.color}" stroke-width="3"${dash}/>`,
      `<text x="${L + 30}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
