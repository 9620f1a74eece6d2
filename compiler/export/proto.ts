// The ONNX messages dlc writes, encoded by hand in the protobuf wire format: only the fields an
// inference graph with initializers needs. Field numbers are those of onnx/onnx's onnx/onnx.proto:
//
//   ModelProto          ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7,
//                       opset_import 8
//   OperatorSetIdProto  domain 1, version 2
//   GraphProto          node 1, name 2, initializer 5, doc_string 10, input 11, output 12
//   NodeProto           input 1, output 2, name 3, op_type 4, attribute 5, doc_string 6
//   AttributeProto      name 1, i 3, ints 8, type 20 (AttributeType INT = 2, INTS = 7)
//   TensorProto         dims 1, data_type 2, name 8, raw_data 9 (little-endian; bool one byte each)
//   ValueInfoProto      name 1, type 2
//   TypeProto           tensor_type 1;  TypeProto.Tensor  elem_type 1, shape 2
//   TensorShapeProto    dim 1;  Dimension  dim_value 1, dim_param 2
//
// onnx.proto is proto2: repeated scalars (dims, ints) are written unpacked, one tag per value.

import type { Dim } from '../../runtime/program.ts';

/** TensorProto.DataType values. */
export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9 } as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

export interface TensorProto {
  name: string;
  dataType: DataType;
  dims: readonly number[];
  /** The elements, row-major, little-endian. */
  raw: Uint8Array;
}

/** dlc's ops need integer attributes only. */
export type AttrValue = number | readonly number[];

export interface NodeProto {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name: string;
  attrs?: Readonly<Record<string, AttrValue>>;
  /** Where in the .dlm source the node came from. */
  doc?: string;
}

export interface ValueInfoProto {
  name: string;
  elemType: DataType;
  /** A string is a symbolic dimension (dim_param). */
  shape: readonly Dim[];
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  doc?: string;
}

export interface ModelProto {
  irVersion: number;
  opset: number;
  producer: string;
  producerVersion: string;
  graph: GraphProto;
  doc?: string;
}

// ---------------------------------------------------------------- the wire format

const utf8 = new TextEncoder();

/** Appends fields to a growing buffer. Wire types: 0 varint, 2 length-delimited. */
class Writer {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private rawVarint(v: number): void {
    // Negative int64s are their 64-bit two's complement: ten bytes.
    let x = BigInt.asUintN(64, BigInt(v));
    this.reserve(10);
    while (x >= 0x80n) {
      this.buf[this.len++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.len++] = Number(x);
  }

  private tag(field: number, wire: 0 | 2): void {
    this.rawVarint((field << 3) | wire);
  }

  varint(field: number, v: number): this {
    if (!Number.isSafeInteger(v)) throw new Error(`protobuf: ${v} is not an integer`);
    this.tag(field, 0);
    this.rawVarint(v);
    return this;
  }

  /** Unpacked repeated varints: one tag per value. */
  varints(field: number, vs: readonly number[]): this {
    for (const v of vs) this.varint(field, v);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.rawVarint(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, utf8.encode(s));
  }

  message(field: number, m: Writer): this {
    return this.bytes(field, m.finish());
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

const AttributeType = { INT: 2, INTS: 7 } as const;

function attribute(name: string, v: AttrValue): Writer {
  const w = new Writer().string(1, name);
  return typeof v === 'number' ? w.varint(3, v).varint(20, AttributeType.INT) : w.varints(8, v).varint(20, AttributeType.INTS);
}

function node(n: NodeProto): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name).string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  if (n.doc) w.string(6, n.doc);
  return w;
}

function tensor(t: TensorProto): Writer {
  return new Writer().varints(1, t.dims).varint(2, t.dataType).string(8, t.name).bytes(9, t.raw);
}

function valueInfo(v: ValueInfoProto): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Writer().varint(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().varint(1, v.elemType).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

function graph(g: GraphProto): Writer {
  const w = new Writer();
  for (const n of g.nodes) w.message(1, node(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, tensor(t));
  if (g.doc) w.string(10, g.doc);
  for (const i of g.inputs) w.message(11, valueInfo(i));
  for (const o of g.outputs) w.message(12, valueInfo(o));
  return w;
}

/** The serialized model: the bytes of an .onnx file. */
export function encodeModel(m: ModelProto): Uint8Array {
  const w = new Writer().varint(1, m.irVersion).string(2, m.producer).string(3, m.producerVersion);
  if (m.doc) w.string(6, m.doc);
  return w.message(7, graph(m.graph)).message(8, new Writer().string(1, '').varint(2, m.opset)).finish();
}
