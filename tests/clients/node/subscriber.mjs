// An independent facetrack stream client, written from docs/protocol.md alone (no facetrack code).
//
//   node subscriber.mjs ENDPOINT COUNT [TIMEOUT_MS]
//
// Connects a SUB socket, subscribes to "facetrack.", keeps metadata by meta_id, decodes COUNT results
// and prints one JSON line per result, then a {"summary": ...} line. Integers are decoded as the doc
// says: every msgpack integer read as signed 64-bit (BigInt for int64/uint64), printed as strings.
import { decode } from "@msgpack/msgpack";
import * as zmq from "zeromq";

const [endpoint, countText, timeoutText] = process.argv.slice(2);
const wanted = Number(countText);
const timeoutMs = Number(timeoutText ?? 10000);

const sub = new zmq.Subscriber({ receiveHighWaterMark: 10000, receiveTimeout: timeoutMs });
sub.connect(endpoint);
sub.subscribe("facetrack.");

const unpack = (bytes) => decode(bytes, { useBigInt64: true });
const asInt64 = (v) => BigInt(v); // small ints arrive as numbers, large ones as BigInt: one type for both
const metadataById = new Map();
const skipped = { no_metadata: 0, wrong_version: 0, unknown_topic: 0, short_frame: 0 };
let decoded = 0;
let metadataSeen = 0;

function readFloats(buf, field) {
  // Little-endian float32, at the byte offset and count the metadata's face_layout gives.
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const offset = Number(field.offset);
  const out = [];
  for (let i = 0; i < Number(field.count); i++) out.push(view.getFloat32(offset + 4 * i, true));
  return out;
}

try {
  while (decoded < wanted) {
    const frames = await sub.receive();
    const topic = frames[0].toString("ascii");
    if (topic === "facetrack.meta") {
      const m = unpack(frames[1]);
      if (asInt64(m.schema_major) !== 1n) { skipped.wrong_version++; continue; }
      metadataById.set(asInt64(m.meta_id), m);
      metadataSeen++;
    } else if (topic === "facetrack.result") {
      const h = unpack(frames[1]);
      if (asInt64(h.schema_major) !== 1n) { skipped.wrong_version++; continue; }
      const m = metadataById.get(asInt64(h.meta_id));
      if (m === undefined) { skipped.no_metadata++; continue; }
      const layout = Object.fromEntries(m.face_layout.map((f) => [f.name, f]));
      const stride = Number(m.face_stride);
      const faces = [];
      let short = false;
      h.faces.forEach((face, i) => {
        const buf = frames[2 + i];
        if (buf.length < stride) { short = true; return; }
        faces.push({
          track_id: asInt64(face.track_id).toString(),
          state: face.state,
          confidence: face.confidence,
          quaternion: readFloats(buf, layout.quaternion),
          translation_m: readFloats(buf, layout.translation_m),
          arkit: readFloats(buf, layout.arkit),
          identity: readFloats(buf, layout.identity),
          face_bytes: buf.length,
        });
      });
      if (short) { skipped.short_frame++; continue; }
      console.log(JSON.stringify({
        seq: asInt64(h.seq).toString(),
        session: asInt64(h.session).toString(),
        meta_id: asInt64(h.meta_id).toString(),
        frame: asInt64(h.frame).toString(),
        t_capture_ns: asInt64(h.t_capture_ns).toString(),
        unix_offset_ns: asInt64(h.unix_offset_ns).toString(),
        identity_dim: asInt64(m.identity_dim).toString(),
        face_stride: stride,
        model_id: m.model_id,
        face_model: m.face_model,
        faces,
      }));
      decoded++;
    } else {
      skipped.unknown_topic++; // other facetrack.* topics may appear in later versions
    }
  }
} catch (err) {
  if (err.code !== "EAGAIN") throw err; // EAGAIN: nothing arrived within the timeout
} finally {
  console.log(JSON.stringify({ summary: { decoded, metadata_seen: metadataSeen, skipped } }));
  sub.close();
}
