// The density benchmark's plot: create time against the number of VMs (through Kubernetes and
// CRI-only) above, memory against the number of VMs (Xen's in use, dom0's) below, in one SVG.
import { plotSvg } from "./operator-plot.js";

export interface DensityPlot {
  /** [VM number, apply→Ready ms] */
  createMs: [number, number][];
  /** [VM number, CRI create ms] */
  criCreateMs: [number, number][];
  /** [VM number, MiB of Xen memory in use above the start] */
  xenMiB: [number, number][];
  /** [VMs, MiB of dom0 memory in use above the start] */
  dom0MiB: [number, number][];
}

/** Two of plotSvg's charts (720x420 each), one above the other. */
export function densitySvg(p: DensityPlot): string {
  const inner = (svg: string, y: number) => svg.replace("<svg ", `<svg y="${y}" `);
  const create = plotSvg("create time per VM (emulated Xen node, lean backend)", "VMs", "ms", [
    { name: "apply → Ready through UnikernelVMs", color: "#1f77b4", points: p.createMs },
    { name: "CRI-only: RunPodSandbox .. StartContainer", color: "#2ca02c", points: p.criCreateMs },
  ]);
  const memory = plotSvg("memory against the number of VMs", "VMs", "MiB above the start", [
    { name: "Xen memory in use", color: "#d62728", points: p.xenMiB },
    { name: "dom0 memory in use (MemTotal - MemAvailable)", color: "#ff7f0e", points: p.dom0MiB },
  ]);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="840" viewBox="0 0 720 840">`,
    inner(create, 0),
    inner(memory, 420),
    "</svg>",
    "",
  ].join("\n");
}
