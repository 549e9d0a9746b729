"""The WebRTC gateway: browsers' ICE/DTLS-SRTP media bridged to plain RTP for the relay.

`translate` turns WebRTC SDP into plain SDP and back (pure); `session` is one browser's
media in a worker process; `worker` is that process; `gateway` is the node's handle on
its workers (start/stop, the RPC, a dead worker restarted and its sessions failed).
"""
