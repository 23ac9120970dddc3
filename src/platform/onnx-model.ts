/**
 * Writes the bytes of a one-node ONNX model (protobuf, onnx.proto3) so onnxruntime can run a
 * single operator on our buffers. A page of protobuf encoding replaces a dependency on the
 * onnx Python package: only the fields below are ever written.
 *   ModelProto: 1 ir_version, 2 producer_name, 7 graph, 8 opset_import
 *   GraphProto: 1 node, 2 name, 11 input, 12 output
 *   NodeProto: 1 input, 2 output, 4 op_type, 5 attribute
 *   AttributeProto: 1 name, 3 i, 20 type (INT = 2)
 *   ValueInfoProto: 1 name, 2 type → TypeProto 1 tensor_type → 1 elem_type (FLOAT = 1), 2 shape
 *   TensorShapeProto: 1 dim → Dimension 1 dim_value | 2 dim_param
 */
type Bytes = number[];

function varint(value: number): Bytes {
  const out: Bytes = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const tag = (field: number, wire: number): Bytes => varint(field * 8 + wire);
const message = (field: number, body: Bytes): Bytes => [...tag(field, 2), ...varint(body.length), ...body];
const utf8 = new TextEncoder();
const text = (field: number, s: string): Bytes => message(field, [...utf8.encode(s)]);
const int = (field: number, v: number): Bytes => [...tag(field, 0), ...varint(v)];

/** A dimension is a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

function valueInfo(name: string, dims: Dim[]): Bytes {
  const shape = dims.flatMap((d) => message(1, typeof d === 'string' ? text(2, d) : int(1, d)));
  const tensorType = [...int(1, 1), ...message(2, shape)];
  return [...text(1, name), ...message(2, message(1, tensorType))];
}

export interface OnnxNodeSpec {
  opType: string;
  inputs: { name: string; dims: Dim[] }[];
  output: { name: string; dims: Dim[] };
  intAttributes?: Record<string, number>;
}

/** Serialises a model with one float32 node; opset 17, IR version 8. */
export function singleNodeModel(spec: OnnxNodeSpec): Uint8Array {
  const attrs = Object.entries(spec.intAttributes ?? {}).flatMap(([name, v]) =>
    message(5, [...text(1, name), ...int(3, v), ...int(20, 2)]),
  );
  const node = [
    ...spec.inputs.flatMap((i) => text(1, i.name)),
    ...text(2, spec.output.name),
    ...text(4, spec.opType),
    ...attrs,
  ];
  const graph = [
    ...message(1, node),
    ...text(2, spec.opType.toLowerCase()),
    ...spec.inputs.flatMap((i) => message(11, valueInfo(i.name, i.dims))),
    ...message(12, valueInfo(spec.output.name, spec.output.dims)),
  ];
  const opset = [...text(1, ''), ...int(2, 17)];
  return Uint8Array.from([...int(1, 8), ...text(2, 'aquakv'), ...message(7, graph), ...message(8, opset)]);
}
