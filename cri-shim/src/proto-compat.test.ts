// Our api.proto must stay wire-compatible with the CRI the kubelet speaks: every message, enum, field
// number, type and label we declare is compared with upstream's api.proto, fetched through the Go
// module cache (`go mod download`), so a typo in a field number fails here and not in a kubelet log.
import test from "ava";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import * as protoLoader from "@grpc/proto-loader";
import { CRI_PROTO_PATH } from "./proto.js";

const CRI_API_MODULE = "k8s.io/cri-api@v0.36.3";

async function upstreamProtoPath(): Promise<string> {
  const { stdout } = await promisify(execFile)("go", ["mod", "download", "-json", CRI_API_MODULE], {
    cwd: "/",
    env: { ...process.env, GOFLAGS: "-mod=mod" },
    maxBuffer: 1 << 20,
  });
  const info = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!info.Dir) throw new Error(`go mod download ${CRI_API_MODULE}: ${info.Error ?? "no Dir"}`);
  return join(info.Dir, "pkg/apis/runtime/v1/api.proto");
}

interface FieldDescriptor {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: MessageDescriptor[];
  enumType: EnumDescriptor[];
}
interface EnumDescriptor {
  name: string;
  value: { name: string; number: number }[];
}
interface MethodDefinition {
  requestType: { type: { name: string } };
  responseType: { type: { name: string } };
  requestStream: boolean;
  responseStream: boolean;
}

function load(path: string): protoLoader.PackageDefinition {
  return protoLoader.loadSync(path, { keepCase: true });
}

function compareMessage(
  ours: MessageDescriptor,
  theirs: MessageDescriptor,
  where: string,
  problems: string[],
): void {
  for (const f of ours.field) {
    const t = theirs.field.find((x) => x.name === f.name);
    if (!t) {
      problems.push(`${where}.${f.name}: not in upstream`);
      continue;
    }
    for (const key of ["number", "label", "type", "typeName"] as const)
      if (f[key] !== t[key])
        problems.push(`${where}.${f.name}: ${key} ${String(f[key])} != upstream ${String(t[key])}`);
  }
  for (const n of ours.nestedType) {
    const t = theirs.nestedType.find((x) => x.name === n.name);
    if (!t) problems.push(`${where}.${n.name}: nested type not in upstream`);
    else compareMessage(n, t, `${where}.${n.name}`, problems);
  }
  for (const e of ours.enumType) {
    const t = theirs.enumType.find((x) => x.name === e.name);
    if (!t) problems.push(`${where}.${e.name}: nested enum not in upstream`);
    else compareEnum(e, t, `${where}.${e.name}`, problems);
  }
}

function compareEnum(ours: EnumDescriptor, theirs: EnumDescriptor, where: string, problems: string[]): void {
  for (const v of ours.value) {
    const t = theirs.value.find((x) => x.name === v.name);
    if (!t) problems.push(`${where}.${v.name}: enum value not in upstream`);
    else if (t.number !== v.number) problems.push(`${where}.${v.name}: ${v.number} != upstream ${t.number}`);
  }
}

test("every message, enum, field and method we declare matches upstream k8s.io/cri-api runtime.v1", async (t) => {
  t.timeout(120_000);
  const ours = load(CRI_PROTO_PATH);
  const theirs = load(await upstreamProtoPath());
  const problems: string[] = [];
  let fields = 0;
  for (const [name, def] of Object.entries(ours)) {
    t.true(name.startsWith("runtime.v1."), `${name} is outside package runtime.v1`);
    const up = theirs[name];
    if (!up) {
      problems.push(`${name}: not in upstream`);
      continue;
    }
    if ("format" in def && def.format === "Protocol Buffer 3 DescriptorProto") {
      const m = def.type as unknown as MessageDescriptor;
      fields += m.field.length;
      compareMessage(m, (up as { type: unknown }).type as unknown as MessageDescriptor, name, problems);
    } else if ("format" in def && def.format === "Protocol Buffer 3 EnumDescriptorProto") {
      compareEnum(
        def.type as unknown as EnumDescriptor,
        (up as { type: unknown }).type as unknown as EnumDescriptor,
        name,
        problems,
      );
    } else {
      // A service: same methods with the same request/response types and streaming.
      for (const [method, m] of Object.entries(def as unknown as Record<string, MethodDefinition>)) {
        const u = (up as unknown as Record<string, MethodDefinition | undefined>)[method];
        if (!u) {
          problems.push(`${name}/${method}: not in upstream`);
          continue;
        }
        if (
          m.requestType.type.name !== u.requestType.type.name ||
          m.responseType.type.name !== u.responseType.type.name
        )
          problems.push(`${name}/${method}: types differ from upstream`);
        if (m.requestStream !== u.requestStream || m.responseStream !== u.responseStream)
          problems.push(`${name}/${method}: streaming differs`);
      }
    }
  }
  t.deepEqual(problems, []);
  // The comparison really covered the contract (not an empty or misparsed file).
  t.true(fields > 250, `only ${fields} fields compared`);
  t.truthy(ours["runtime.v1.RuntimeService"]);
  t.truthy(ours["runtime.v1.ImageService"]);
});

test("the comparison catches a wrong field number", (t) => {
  const problems: string[] = [];
  const f = (number: number): FieldDescriptor => ({
    name: "id",
    number,
    label: "LABEL_OPTIONAL",
    type: "TYPE_STRING",
    typeName: "",
  });
  compareMessage(
    { name: "M", field: [f(2)], nestedType: [], enumType: [] },
    { name: "M", field: [f(1)], nestedType: [], enumType: [] },
    "M",
    problems,
  );
  t.deepEqual(problems, ["M.id: number 2 != upstream 1"]);
});
