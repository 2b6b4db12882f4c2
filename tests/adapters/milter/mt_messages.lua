-- Several messages on one connection, an aborted one in between, headers added.
-- Run by test_milter_miltertest.py: miltertest -s mt_messages.lua -D SOCK=unix:PATH
-- No mt.eoh(): mxscan negotiates SMFIP_NOEOH, and miltertest refuses to send it then.
local function check(ok, what) if not ok then error("FAILED: " .. what) end end
local function ok(err, what) if err ~= nil then error(what .. ": " .. err) end end

local conn = mt.connect(SOCK, 40, 0.25)
check(conn ~= nil, "connect")
ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC requested")
check(mt.test_option(conn, SMFIP_NODATA), "DATA step switched off")
check(not mt.test_option(conn, SMFIP_NR_RCPT), "RCPT gets a reply")
check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS requested")
check(mt.test_action(conn, SMFIF_CHGHDRS), "CHGHDRS requested")
check(mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE requested")

ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example", "{client_addr}", "127.0.0.1"), "macro")
ok(mt.conninfo(conn, "client.example", "127.0.0.1"), "conninfo")
ok(mt.helo(conn, "client.example"), "helo")

-- message 1: clean, gets X-Scanned
ok(mt.mailfrom(conn, "<sender@example.org>"), "mailfrom 1")
ok(mt.rcptto(conn, "<rcpt@example.net>"), "rcptto 1")
check(mt.getreply(conn) == SMFIR_CONTINUE, "rcpt 1 continue")
ok(mt.header(conn, "Subject", " hello"), "header")
ok(mt.header(conn, "From", " <sender@example.org>"), "header")
ok(mt.bodystring(conn, "first body\r\n"), "body")
ok(mt.eom(conn), "eom 1")
check(mt.getreply(conn) == SMFIR_CONTINUE, "eom 1 continue")
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned"), "X-Scanned added")

-- message 2: aborted half way
ok(mt.mailfrom(conn, "<sender@example.org>"), "mailfrom 2")
ok(mt.rcptto(conn, "<rcpt@example.net>"), "rcptto 2")
ok(mt.header(conn, "Subject", " discard-me"), "header 2")
ok(mt.abort(conn), "abort")

-- message 3: the aborted message's header must not leak into this one
ok(mt.mailfrom(conn, "<other@example.org>"), "mailfrom 3")
ok(mt.rcptto(conn, "<rcpt@example.net>"), "rcptto 3")
ok(mt.header(conn, "Subject", " innocent"), "header 3")
ok(mt.bodystring(conn, "third body\r\n"), "body 3")
ok(mt.eom(conn), "eom 3")
check(mt.getreply(conn) == SMFIR_CONTINUE, "eom 3 continue (aborted discard-me did not leak)")
check(mt.eom_check(conn, MT_HDRADD, "X-Scanned"), "X-Scanned added to message 3")

-- message 4: discarded, on the same connection
ok(mt.mailfrom(conn, "<sender@example.org>"), "mailfrom 4")
ok(mt.rcptto(conn, "<rcpt@example.net>"), "rcptto 4")
ok(mt.header(conn, "Subject", " discard-me please"), "header 4")
ok(mt.bodystring(conn, "x\r\n"), "body 4")
ok(mt.eom(conn), "eom 4")
check(mt.getreply(conn) == SMFIR_DISCARD, "eom 4 discard")

mt.disconnect(conn)
mt.echo("mt_messages: all checks passed")
