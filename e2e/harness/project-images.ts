// The project's own images in a test registry, as a user makes them: `npm run images` (the built
// CLI, dist/tools/images.js) pushes both, and its JSON report gives the chart values that pin them.
// For `helm install` in the e2e cluster: helm ... $(helmImageValues(report)).
import { join } from "node:path";
import { REPO_ROOT } from "../../lib/paths.js";
import { runAsync } from "../../lib/process.js";

export interface ImagesReport {
  version: string;
  commit: string;
  dirty: boolean;
  pushed: boolean;
  buildMs: number;
  images: Array<{
    name: "operator" | "cri-shim";
    references: string[];
    digest: string;
    pinned: string;
    sizeBytes: number;
    unpackedBytes: number;
    layers: Array<{ digest: string; size: number; files: number }>;
  }>;
}

/** Runs `npm run images`'s program against `registry` (host:port; plain HTTP on loopback). */
export async function pushProjectImages(registry: string): Promise<ImagesReport> {
  const r = await runAsync(
    process.execPath,
    [join(REPO_ROOT, "dist/tools/images.js"), "--registry", registry],
    {
      timeoutMs: 600_000,
    },
  );
  if (r.code !== 0) throw new Error(`npm run images exited ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  return JSON.parse(r.stdout) as ImagesReport;
}

const CHART_KEY = { operator: "operator", "cri-shim": "shim" } as const;

/**
 * `--set` arguments that point the chart at the report's images, pinned by digest. `pullFrom`: the
 * registry as the nodes reach it, when that is not the address the images were pushed to (an
 * emulated node pulls the host's registry through its own localhost:5000).
 */
export function helmImageValues(report: ImagesReport, pullFrom?: string): string[] {
  return report.images.flatMap((i) => {
    const pushed = i.pinned.slice(0, i.pinned.lastIndexOf("@"));
    const repository = pullFrom ? `${pullFrom}${pushed.slice(pushed.indexOf("/"))}` : pushed;
    return [
      "--set",
      `${CHART_KEY[i.name]}.image.repository=${repository}`,
      "--set",
      `${CHART_KEY[i.name]}.image.digest=${i.digest}`,
    ];
  });
}
