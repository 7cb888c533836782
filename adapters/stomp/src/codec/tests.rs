use super::*;
use proptest::prelude::*;

fn decode_all(codec: &mut StompCodec, bytes: &[u8]) -> Result<Vec<Inbound>, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(item) = codec.decode(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

fn frames(bytes: &[u8], version: Option<Version>) -> Vec<Frame> {
    let mut codec = StompCodec::new(Limits::default());
    if let Some(v) = version {
        codec.set_version(v);
    }
    decode_all(&mut codec, bytes)
        .unwrap()
        .into_iter()
        .filter_map(|i| match i {
            Inbound::Frame(f) => Some(f),
            Inbound::HeartBeat => None,
        })
        .collect()
}

fn error_of(bytes: &[u8], version: Option<Version>, limits: Limits) -> String {
    let mut codec = StompCodec::new(limits);
    if let Some(v) = version {
        codec.set_version(v);
    }
    decode_all(&mut codec, bytes).expect_err("refused").to_string()
}

#[test]
fn heart_beats_crlf_lines_and_a_nul_terminated_body() {
    let mut codec = StompCodec::new(Limits::default());
    let got = decode_all(&mut codec, b"\n\r\nSEND\r\ndestination:/queue/a\r\n\r\nhello\0\n").unwrap();
    assert_eq!(got[..2], [Inbound::HeartBeat, Inbound::HeartBeat]);
    let Inbound::Frame(f) = &got[2] else { panic!("a frame") };
    assert_eq!((f.command.as_str(), f.header("destination"), &f.body[..]), ("SEND", Some("/queue/a"), &b"hello"[..]));
    assert_eq!(got[3], Inbound::HeartBeat);
}

#[test]
fn content_length_bodies_may_hold_nul_bytes() {
    let f = frames(b"SEND\ndestination:/queue/a\ncontent-length:5\n\na\0b\0c\0", None);
    assert_eq!(&f[0].body[..], b"a\0b\0c");
}

#[test]
fn escapes_depend_on_version_and_command() {
    let escaped = b"SEND\nkey\\cx:a\\nb\\\\c\\rd\n\n\0";
    assert_eq!(frames(escaped, Some(Version::V12))[0].header("key:x"), Some("a\nb\\c\rd"));
    assert_eq!(frames(b"SEND\nk:a\\cb\n\n\0", Some(Version::V10))[0].header("k"), Some("a\\cb"), "1.0 has no escapes");
    assert_eq!(frames(b"CONNECT\nlogin:a\\cb\n\n\0", Some(Version::V12))[0].header("login"), Some("a\\cb"));
    assert!(error_of(b"SEND\nk:a\\rb\n\n\0", Some(Version::V11), Limits::default()).contains("escape"), "\\r is 1.2 only");
    assert!(error_of(b"SEND\nk:a\\tb\n\n\0", Some(Version::V12), Limits::default()).contains("escape"));
}

#[test]
fn values_keep_colons_after_the_first() {
    let f = frames(b"SEND\ndestination:/exchange/x/a:b\n\n\0", None);
    assert_eq!(f[0].header("destination"), Some("/exchange/x/a:b"));
}

#[test]
fn bad_frames_are_refused_with_a_reason() {
    let limits = Limits::default;
    assert!(error_of(b"send\n\n\0", None, limits()).contains("invalid command"));
    assert!(error_of(b"SEND\nno-colon\n\n\0", None, limits()).contains("colon"));
    assert!(error_of(b"SEND\ncontent-length:x\n\n\0", None, limits()).contains("content-length"));
    assert!(error_of(b"SEND\ncontent-length:1\n\nab\0", None, limits()).contains("NUL"));
    let small = Limits { max_headers: 2, max_header_line: 16, max_head: 64, max_body: 8 };
    assert!(error_of(b"SEND\na:1\nb:2\nc:3\n\n\0", None, small.clone()).contains("too many headers"));
    assert!(error_of(b"SEND\na:0123456789abcdefghij\n\n\0", None, small.clone()).contains("header line too long"));
    assert!(error_of(b"SEND\ncontent-length:9\n\n", None, small.clone()).contains("body too large"));
    assert!(error_of(b"SEND\n\n0123456789", None, small.clone()).contains("body too large"), "checked before the NUL arrives");
    assert!(error_of(b"SEND\naaaaaaaaaaaaaaaaaaaaaa", None, small).contains("header line too long"), "checked before the EOL arrives");
}

#[test]
fn encoding_escapes_and_adds_content_length() {
    let mut codec = StompCodec::new(Limits::default());
    codec.set_version(Version::V12);
    let mut out = BytesMut::new();
    let frame = Frame::new("MESSAGE").with("k:1", "a\nb").with_body(&b"x\0y"[..]);
    codec.encode_frame(&frame, &mut out);
    assert_eq!(&out[..], b"MESSAGE\nk\\c1:a\\nb\ncontent-length:3\n\nx\0y\0");
    let mut out = BytesMut::new();
    codec.encode_frame(&Frame::new("CONNECTED").with("server", "a:b"), &mut out);
    assert_eq!(&out[..], b"CONNECTED\nserver:a:b\n\n\0", "CONNECTED is never escaped");
}

fn header_text_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('\\'), Just(':'), Just('\n'), Just('\r'), Just('é'), proptest::char::range('a', 'z')], 0..12)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    /// Whatever the server encodes in 1.2 decodes back to the same frame, however it is split.
    #[test]
    fn encode_then_decode_is_the_identity(
        headers in proptest::collection::vec((header_text_strategy(), header_text_strategy()), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        split in 0usize..200,
    ) {
        let mut codec = StompCodec::new(Limits::default());
        codec.set_version(Version::V12);
        let mut frame = Frame::new("SEND").with_body(body.clone());
        frame.headers = headers.into_iter().filter(|(k, _)| k != "content-length").collect();
        let mut wire = BytesMut::new();
        codec.encode_frame(&frame, &mut wire);
        let split = split.min(wire.len());
        let mut buf = BytesMut::from(&wire[..split]);
        let mut got = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() { got.push(item); }
        buf.extend_from_slice(&wire[split..]);
        while let Some(item) = codec.decode(&mut buf).unwrap() { got.push(item); }
        let Some(Inbound::Frame(back)) = got.pop() else { panic!("a frame") };
        prop_assert_eq!(&back.body[..], &body[..]);
        let without_length: Vec<_> = back.headers.into_iter().filter(|(k, _)| k != "content-length").collect();
        prop_assert_eq!(without_length, frame.headers);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = StompCodec::new(Limits { max_headers: 8, max_header_line: 64, max_head: 256, max_body: 256 });
        codec.set_version(Version::V12);
        let _ = decode_all(&mut codec, &bytes);
    }
}
