//! What issue 6 asks for and this branch does not have yet. Each test is
//! ignored and says what is missing; none of them pretends.

#[test]
#[ignore = "missing: io_uring event loop (multishot accept, provided-buffer recv, send queues with byte caps, connect timeout, timers, eventfd wake-up) and its fallback path"]
fn io_uring_event_loop() {
    unimplemented!("event_loop.rs / ring.rs are not written yet");
}

#[test]
#[ignore = "missing: Node::start(config) -> Handle with send/broadcast/request, bounded event stream, peer list and stats"]
fn public_node_api() {
    unimplemented!("the public node API depends on the event loop");
}

#[test]
#[ignore = "missing: 8-10 nodes on 127.0.0.1 discovering each other from one seed; an item pushed at one node reaching each node exactly once"]
fn ten_nodes_discover_and_gossip() {
    unimplemented!("needs the event loop");
}

#[test]
#[ignore = "missing: hostile peers over real sockets (garbage, 4 GiB claim, slowloris, flood, never-reading, bad signature) dropped and scored while others keep working"]
fn hostile_peers_over_sockets() {
    unimplemented!(
        "needs the event loop; the decoders' and scoring's behaviour on such input is unit-tested"
    );
}
