//! Keeps `proto/store.proto` honest: parses its messages and fields and
//! checks them against the tags the prost structs actually write.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use crate::command::wire;

/// message name -> field name -> (type, tag), from the .proto text.
type Schema = BTreeMap<String, BTreeMap<String, (String, u32)>>;

/// A deliberately small parser for the subset of proto3 the file uses:
/// `message X {`, `oneof y {`, `[repeated] type name = tag;`, `}`.
fn parse_proto(text: &str) -> Result<Schema, String> {
    let mut schema = Schema::new();
    let mut current: Option<String> = None;
    let mut depth = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("syntax") || line.starts_with("package") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("message ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            if depth != 0 || schema.insert(name.clone(), BTreeMap::new()).is_some() {
                return Err(format!("line {}: nested or duplicate message {name}", n + 1));
            }
            current = Some(name);
            depth = 1;
        } else if line.starts_with("oneof ") && line.ends_with('{') {
            depth += 1;
        } else if line == "}" {
            depth -= 1;
            if depth == 0 {
                current = None;
            }
        } else {
            let message = current
                .as_ref()
                .ok_or(format!("line {}: field outside a message", n + 1))?;
            let decl = line.strip_suffix(';').ok_or(format!("line {}: expected `;`", n + 1))?;
            let (lhs, tag) = decl
                .split_once('=')
                .ok_or(format!("line {}: expected `= tag`", n + 1))?;
            let tag: u32 = tag.trim().parse().map_err(|e| format!("line {}: tag: {e}", n + 1))?;
            let words: Vec<&str> = lhs.split_whitespace().collect();
            let (ty, name) = match words.as_slice() {
                [ty, name] => (ty.to_string(), name.to_string()),
                ["repeated", ty, name] => (format!("repeated {ty}"), name.to_string()),
                _ => return Err(format!("line {}: cannot parse field `{line}`", n + 1)),
            };
            let fields = schema.get_mut(message).expect("current message exists");
            if fields.insert(name.clone(), (ty, tag)).is_some() {
                return Err(format!("line {}: duplicate field {name}", n + 1));
            }
        }
    }
    if depth != 0 {
        return Err("unbalanced braces".into());
    }
    Ok(schema)
}

/// Field numbers at the top level of a protobuf encoding.
fn top_level_tags(mut b: &[u8]) -> BTreeSet<u32> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut tags = BTreeSet::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        tags.insert((key >> 3) as u32);
        match key & 7 {
            0 => {
                varint(&mut b);
            }
            2 => {
                let len = varint(&mut b) as usize;
                b = &b[len..];
            }
            wire_type => panic!("wire type {wire_type} not used by store.proto"),
        }
    }
    tags
}

/// Every message of the schema, encoded with every field set to a
/// non-default value (one encoding per oneof variant), by the Rust structs.
fn rust_encodings() -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let k = || b"k".to_vec();
    let put = wire::Put {
        key: k(),
        value: k(),
        expires_at_ms: 1,
    };
    let append = wire::Append { key: k(), value: k() };
    let delete = wire::Delete { key: k() };
    let cas = wire::Cas {
        key: k(),
        expected_version: 1,
        value: k(),
        expires_at_ms: 1,
    };
    let expire = wire::Expire { key: k(), version: 1 };
    let surf = wire::SurfUpdate {
        filename: "f".into(),
        version: 1,
        block_hashes: vec!["h".into()],
    };
    use wire::command::Op;
    let commands = [
        Op::Put(put.clone()),
        Op::Append(append.clone()),
        Op::Delete(delete.clone()),
        Op::Cas(cas.clone()),
        Op::Expire(expire.clone()),
        Op::SurfUpdate(surf.clone()),
        Op::RegisterSession(wire::RegisterSession {}),
    ]
    .into_iter()
    .map(|op| {
        wire::Command {
            session: Some(wire::Session { client_id: 1, seq: 1 }),
            now_ms: 1,
            op: Some(op),
        }
        .encode_to_vec()
    })
    .collect();
    BTreeMap::from([
        ("Session", vec![wire::Session { client_id: 1, seq: 1 }.encode_to_vec()]),
        ("Command", commands),
        ("Put", vec![put.encode_to_vec()]),
        ("Append", vec![append.encode_to_vec()]),
        ("Delete", vec![delete.encode_to_vec()]),
        ("Cas", vec![cas.encode_to_vec()]),
        ("Expire", vec![expire.encode_to_vec()]),
        ("SurfUpdate", vec![surf.encode_to_vec()]),
        ("RegisterSession", vec![wire::RegisterSession {}.encode_to_vec()]),
    ])
}

/// The differences between the .proto's tags and the Rust encodings' tags.
fn compare(schema: &Schema) -> Vec<String> {
    let rust = rust_encodings();
    let mut problems = Vec::new();
    let proto_names: BTreeSet<&str> = schema.keys().map(String::as_str).collect();
    let rust_names: BTreeSet<&str> = rust.keys().copied().collect();
    if proto_names != rust_names {
        problems.push(format!("messages differ: proto {proto_names:?}, rust {rust_names:?}"));
    }
    for (message, encodings) in &rust {
        let Some(fields) = schema.get(*message) else { continue };
        let proto_tags: BTreeSet<u32> = fields.values().map(|(_, tag)| *tag).collect();
        let rust_tags: BTreeSet<u32> = encodings.iter().flat_map(|e| top_level_tags(e)).collect();
        if proto_tags != rust_tags {
            problems.push(format!(
                "{message}: proto tags {proto_tags:?}, rust writes {rust_tags:?}"
            ));
        }
    }
    problems
}

const PROTO: &str = include_str!("../proto/store.proto");

#[test]
fn proto_file_matches_the_wire_structs() {
    let schema = parse_proto(PROTO).unwrap();
    assert_eq!(schema["Command"]["surf_update"], ("SurfUpdate".to_string(), 8));
    assert_eq!(schema["SurfUpdate"]["block_hashes"], ("repeated string".to_string(), 3));
    assert_eq!(compare(&schema), Vec::<String>::new());
}

#[test]
fn a_wrong_tag_in_the_proto_file_is_caught() {
    let edited = PROTO.replace("uint64 expected_version = 2;", "uint64 expected_version = 5;");
    assert_ne!(edited, PROTO);
    let problems = compare(&parse_proto(&edited).unwrap());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("Cas:"), "{problems:?}");
}

#[test]
fn a_missing_message_or_field_is_caught() {
    let without_field = PROTO.replace("  uint64 now_ms = 2;\n", "");
    assert_ne!(without_field, PROTO);
    assert!(compare(&parse_proto(&without_field).unwrap())[0].starts_with("Command:"));
    let renamed = PROTO.replace("message Delete {", "message Remove {");
    assert!(compare(&parse_proto(&renamed).unwrap())[0].starts_with("messages differ"));
}

#[test]
fn unparseable_proto_is_an_error() {
    assert!(parse_proto("message A {\n  uint64 x = one;\n}").is_err());
    assert!(parse_proto("message A {\n  uint64 x = 1\n}").is_err());
    assert!(parse_proto("message A {\n").is_err());
    assert!(parse_proto("uint64 x = 1;").is_err());
}
