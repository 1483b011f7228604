"""A Matrix client session driven by matrix-nio (Debian's python3-matrix-nio,
unmodified) against the engine, for the Go tests.

    python3 client.py first  STATE BASE_URL
    python3 client.py resume STATE BASE_URL [--no-send]

"first" registers alice and bob, creates and joins a room, and checks
every feature a client needs: a long-polling /sync woken by a message,
profiles, typing, read markers and receipts, tags, account data, filters
(timeline limit, lazy-loaded members) and pagination with prev_batch. It
leaves messages bob has not synced yet and saves bob's next_batch in STATE.

"resume" (after a restart, a port, an upgrade, a rollback ...) syncs bob
from the saved next_batch: it must receive exactly the messages left
pending, none it had already seen; then a long-poll woken by a new message,
and new pending messages for the next resume (unless --no-send).

Any failed check exits 1 with the reason on stderr.
"""

import asyncio
import json
import sys

from nio import (
    AsyncClient,
    AsyncClientConfig,
    FullyReadEvent,
    JoinResponse,
    LoginResponse,
    ProfileSetDisplayNameResponse,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    TagEvent,
    TypingNoticeEvent,
    UnknownAccountDataEvent,
    UploadFilterResponse,
)

PASSWORD = "correct horse battery staple"


def fail(msg):
    print("nio client: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(resp, kind, what):
    if not isinstance(resp, kind):
        fail(f"{what}: {resp}")
    return resp


def client(base, user, token=None, device=None):
    c = AsyncClient(base, user, config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False))
    if token:
        c.restore_login(user, device, token)
    return c


async def sync(c, what, **kw):
    return ok(await c.sync(**kw), SyncResponse, what)


async def send(c, room, body):
    resp = ok(await c.room_send(room, "m.room.message", {"msgtype": "m.text", "body": body}), RoomSendResponse, "send " + body)
    return resp.event_id


def messages(resp, room):
    info = resp.rooms.join.get(room)
    if info is None:
        return []
    return [e for e in info.timeline.events if isinstance(e, RoomMessageText)]


async def wake_with(waiter, room, sender, body):
    """A long-poll of waiter wakes with the message sender sends while it
    waits (the timeout is far longer than the test: a sync that only
    returned on its timeout would hold nothing)."""
    task = asyncio.ensure_future(waiter.sync(timeout=60000, since=waiter.next_batch))
    await asyncio.sleep(0.3)
    check(not task.done(), f"the long-poll returned before {body!r} was sent: {task.result() if task.done() else ''}")
    event_id = await send(sender, room, body)
    resp = ok(await task, SyncResponse, "long-poll")
    got = [e.body for e in messages(resp, room)]
    check(got == [body], f"the long-poll woke with {got}, want [{body!r}]")
    return event_id, resp


async def first(state_path, base):
    alice, bob = client(base, "alice"), client(base, "bob")
    ok(await alice.register("alice", PASSWORD, device_name="alice's laptop"), RegisterResponse, "register alice")
    ok(await bob.register("bob", PASSWORD), RegisterResponse, "register bob")
    # A fresh login for bob: a second device.
    await bob.close()
    bob = client(base, "@bob:example.org")
    ok(await bob.login(PASSWORD, device_name="bob's phone"), LoginResponse, "login bob")

    room = ok(await alice.room_create(name="Ops", topic="upgrades", preset=RoomPreset.public_chat), RoomCreateResponse, "create room").room_id
    ok(await bob.join(room), JoinResponse, "join")
    name = ok(await bob.room_get_state_event(room, "m.room.name"), RoomGetStateEventResponse, "get m.room.name (no state key)")
    check(name.content.get("name") == "Ops", f"m.room.name: {name.content}")

    resp = await sync(bob, "initial sync", full_state=True)
    check(room in resp.rooms.join, "the room is not in bob's initial sync")
    check(bob.rooms[room].display_name == "Ops", f"room name from the sync state: {bob.rooms[room].display_name}")
    await sync(alice, "alice's initial sync")

    hello, _ = await wake_with(bob, room, alice, "hello bob")

    # Profile: the new display name reaches the room as a member event.
    ok(await alice.set_displayname("Alice Ops"), ProfileSetDisplayNameResponse, "set displayname")
    dn = await bob.get_displayname("@alice:example.org")
    check(getattr(dn, "displayname", None) == "Alice Ops", f"get_displayname: {dn}")
    resp = await sync(bob, "sync after the profile change", timeout=30000)
    members = [e for e in resp.rooms.join[room].timeline.events if isinstance(e, RoomMemberEvent)]
    check(any(e.content.get("displayname") == "Alice Ops" for e in members), f"no member event with the new name: {members}")
    check(bob.rooms[room].user_name("@alice:example.org") == "Alice Ops", "bob's room does not know alice's new name")

    # Typing.
    await alice.room_typing(room, True, timeout=20000)
    resp = await sync(bob, "sync after typing", timeout=30000)
    typing = [e for e in resp.rooms.join[room].ephemeral if isinstance(e, TypingNoticeEvent)]
    check(typing and typing[-1].users == ["@alice:example.org"], f"typing: {typing}")
    await alice.room_typing(room, False)
    resp = await sync(bob, "sync after typing stopped", timeout=30000)
    typing = [e for e in resp.rooms.join[room].ephemeral if isinstance(e, TypingNoticeEvent)]
    check(typing and typing[-1].users == [], f"typing stopped: {typing}")

    # Read markers and receipts.
    await bob.room_read_markers(room, hello, hello)
    resp = await sync(bob, "sync after read markers", timeout=30000)
    fully = [e for e in resp.rooms.join[room].account_data if isinstance(e, FullyReadEvent)]
    check(fully and fully[-1].event_id == hello, f"m.fully_read: {resp.rooms.join[room].account_data}")
    check(resp.rooms.join[room].unread_notifications.notification_count == 0, "unread count after reading")
    resp = await sync(alice, "alice's sync after bob's receipt", timeout=30000)
    receipts = [r for e in resp.rooms.join[room].ephemeral if isinstance(e, ReceiptEvent) for r in e.receipts]
    check(any(r.event_id == hello and r.user_id == "@bob:example.org" and r.receipt_type == "m.read" for r in receipts), f"receipts: {receipts}")
    await alice.update_receipt_marker(room, hello)

    # Tags and account data (no helper in nio 0.20: its raw request).
    token = "?access_token=" + bob.access_token
    r = await bob.send("PUT", f"/_matrix/client/r0/user/@bob:example.org/rooms/{room}/tags/m.favourite{token}", json.dumps({"order": 0.5}))
    check(r.status == 200, f"put tag: {r.status}")
    r = await bob.send("PUT", f"/_matrix/client/r0/user/@bob:example.org/account_data/org.example.settings{token}", json.dumps({"theme": "dark"}))
    check(r.status == 200, f"put account data: {r.status}")
    resp = await sync(bob, "sync after tags and account data", timeout=30000)
    tags = [e for e in resp.rooms.join[room].account_data if isinstance(e, TagEvent)]
    check(tags and "m.favourite" in tags[-1].tags, f"tags: {resp.rooms.join[room].account_data}")
    settings = [e for e in resp.account_data_events if isinstance(e, UnknownAccountDataEvent) and e.type == "org.example.settings"]
    check(settings and settings[-1].content == {"theme": "dark"}, f"account data: {resp.account_data_events}")

    # A filter: 5 events of timeline, lazy-loaded members; prev_batch pages on.
    for i in range(8):
        await send(alice, room, f"burst {i}")
    fid = ok(await bob.upload_filter(room={"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}), UploadFilterResponse, "upload filter").filter_id
    fresh = client(base, "@bob:example.org", bob.access_token, bob.device_id)
    resp = await sync(fresh, "filtered initial sync", sync_filter=fid)
    tl = resp.rooms.join[room].timeline
    check(len(tl.events) == 5 and tl.limited, f"filtered timeline: {len(tl.events)} events, limited {tl.limited}")
    check([e.body for e in tl.events if isinstance(e, RoomMessageText)] == [f"burst {i}" for i in range(3, 8)], "filtered timeline bodies")
    page = ok(await fresh.room_messages(room, tl.prev_batch, limit=3), RoomMessagesResponse, "messages from prev_batch")
    check([e.body for e in page.chunk] == ["burst 2", "burst 1", "burst 0"], f"page before the timeline: {[getattr(e, 'body', e) for e in page.chunk]}")
    await fresh.close()

    # Incremental: bob catches up, then two messages he has not synced.
    resp = await sync(bob, "incremental sync")
    check([e.body for e in messages(resp, room)] == [f"burst {i}" for i in range(8)], "incremental sync bodies")
    seen = [e.event_id for e in resp.rooms.join[room].timeline.events] + [hello]
    pending = ["pending 1", "pending 2"]
    for body in pending:
        await send(alice, room, body)
    save(state_path, alice, bob, room, seen, pending)
    await alice.close()
    await bob.close()


def save(path, alice, bob, room, seen, pending):
    with open(path, "w") as f:
        json.dump({
            "alice": [alice.user_id, alice.device_id, alice.access_token],
            "bob": [bob.user_id, bob.device_id, bob.access_token],
            "room": room, "next_batch": bob.next_batch, "seen": seen, "pending": pending,
        }, f)


async def resume(state_path, base, send_more):
    with open(state_path) as f:
        st = json.load(f)
    alice, bob = client(base, st["alice"][0], st["alice"][2], st["alice"][1]), client(base, st["bob"][0], st["bob"][2], st["bob"][1])
    room = st["room"]
    bob.next_batch = st["next_batch"]
    got, ids = [], []
    while True:
        resp = await sync(bob, "sync from the saved next_batch", since=bob.next_batch)
        batch = resp.rooms.join.get(room)
        if batch is None:
            break
        check(not batch.timeline.limited, "the resumed timeline is limited: events were skipped")
        ids += [e.event_id for e in batch.timeline.events]
        got += [e.body for e in batch.timeline.events if isinstance(e, RoomMessageText)]
    check(got == st["pending"], f"resumed from the old next_batch: got {got}, want {st['pending']}")
    again = set(ids) & set(st["seen"])
    check(not again, f"events seen before came again: {sorted(again)}")
    seen = st["seen"] + ids
    # The data of the first session is still there.
    token = "?access_token=" + bob.access_token
    r = await bob.send("GET", f"/_matrix/client/r0/user/@bob:example.org/rooms/{room}/tags{token}")
    body = await r.json()
    check(r.status == 200 and "m.favourite" in body.get("tags", {}), f"tags after the journey: {r.status} {body}")
    dn = await bob.get_displayname("@alice:example.org")
    check(getattr(dn, "displayname", None) == "Alice Ops", f"alice's name after the journey: {dn}")
    pending = []
    if send_more:
        event_id, resp = await wake_with(bob, room, alice, "after the journey")
        seen += [e.event_id for e in resp.rooms.join[room].timeline.events]
        n = len(st["seen"])
        pending = [f"pending {n} {i}" for i in (1, 2)]
        for body in pending:
            await send(alice, room, body)
    save(state_path, alice, bob, room, seen, pending)
    await alice.close()
    await bob.close()


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("first", "resume"):
        fail("usage: client.py first|resume STATE BASE_URL [--no-send]")
    phase, state, base = sys.argv[1:4]
    if phase == "first":
        asyncio.run(first(state, base))
    else:
        asyncio.run(resume(state, base, "--no-send" not in sys.argv[4:]))
    print("nio client: " + phase + " ok")


main()
