#!/usr/bin/env bash
# A back-end's socket into its agent (the agent's --listen) is hostile
# input too: a message of many frames is refused, read one frame at a time
# rather than held, and the agent goes on serving its back-ends.
source "$(dirname "$0")/lib.sh"
setup_certs mois
setup_policy
start_broker
start_agent mois
front() { "$BUILD/tests/rogue" --certs "$CERTS" --agency mois --broker "$(agent_ep mois)" "$@"; }

got=$(front front-frames 1 | tail -1)
[ "$got" = "answer: ok" ] || fail "a one-frame call: expected ok, got '$got'"
pass "a one-frame call to the agent: ok"

# 200,000 empty frames after a call, in one message: libzmq's
# ZMQ_MAXMSGSIZE bounds each frame, not their number, and zmsg_recv would
# hold every one (about 750 MB per million frames).
rss() { awk '/^VmRSS/ {print $2}' "/proc/${AGENT_PID[mois]}/status"; }
rss_before=$(rss)
got=$(front front-frames 200000 | tail -1)
grown=$(( $(rss) - rss_before ))
[ "$got" = "answer: malformed" ] || fail "a call of 200,000 frames: expected malformed, got '$got'"
[ "$grown" -lt 80000 ] || fail "a message of 200,000 frames grew the agent by $grown kB"
pass "a call of 200,000 frames: malformed, the agent grew by $grown kB"

got=$(front front-frames 1 | tail -1)
[ "$got" = "answer: ok" ] || fail "after the frames: expected ok, got '$got'"
pass "the agent still serves its back-ends"
