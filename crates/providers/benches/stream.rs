//! Micro-benchmarks of the per-chunk stream work (`wire-formats.md` §0.1, §7.4): SSE decoding of
//! a 50-event stream arriving in network-sized pieces, and decoding + translation into OpenAI
//! chunks (OpenAI passthrough; Anthropic → OpenAI). Run: `cargo bench -p gatehouse-providers`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_providers::bench_support::{Dialect, decode_and_translate};
use gatehouse_providers::sse::SseDecoder;

fn openai_stream(chunks: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..chunks {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} é\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn anthropic_stream(chunks: usize) -> Vec<u8> {
    let mut s = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
    for i in 0..chunks {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} é\"}}}}\n\n"
        ));
    }
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn decode(bytes: &[u8], piece: usize) -> usize {
    let mut d = SseDecoder::new();
    let mut n = 0;
    for part in bytes.chunks(piece) {
        if d.push(part).is_err() {
            return n;
        }
        while let Some(e) = d.next_event() {
            n += e.data.len();
        }
    }
    n
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_decode_50_events");
    for (name, bytes) in [("openai", openai_stream(50)), ("anthropic", anthropic_stream(50))] {
        g.throughput(Throughput::Elements(50));
        g.bench_function(name, |b| b.iter(|| decode(black_box(&bytes), 1460)));
    }
    g.finish();
    let mut g = c.benchmark_group("decode_and_translate_50_events");
    for (name, dialect, bytes) in
        [("openai_passthrough", Dialect::OpenAi, openai_stream(50)), ("anthropic_to_openai", Dialect::Anthropic, anthropic_stream(50))]
    {
        g.throughput(Throughput::Elements(50));
        g.bench_function(name, |b| b.iter(|| decode_and_translate(dialect, black_box(&bytes), 1460)));
    }
    g.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
