-- Each end-of-message action, one message per action on one connection.
local function check(ok, what) if not ok then error("FAILED: " .. what) end end
-- miltertest swallows Lua error texts: print the failure before raising it.
local function eom_has(what, ...)
  local done, result = pcall(mt.eom_check, conn, ...)
  if not (done and result) then
    mt.echo("FAILED: " .. what .. " (" .. tostring(result) .. ")")
    error("FAILED: " .. what)
  end
end
local function ok(err, what) if err ~= nil then error(what .. ": " .. err) end end

conn = mt.connect(SOCK, 40, 0.25)
check(conn ~= nil, "connect")
ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
ok(mt.conninfo(conn, "client.example", "127.0.0.1"), "conninfo")
ok(mt.helo(conn, "client.example"), "helo")

local function message(subject)
  ok(mt.mailfrom(conn, "<sender@example.org>"), "mailfrom")
  ok(mt.rcptto(conn, "<rcpt@example.net>"), "rcptto")
  ok(mt.header(conn, "Subject", " " .. subject), "header")
  ok(mt.header(conn, "X-Other", " kept"), "header")
  ok(mt.bodystring(conn, "body\r\n"), "body")
  ok(mt.eom(conn), "eom")
  return mt.getreply(conn)
end

check(message("reject-me") == SMFIR_REPLYCODE, "reject gives a reply code")
-- miltertest compares the raw reply: "%" is doubled on the wire.
eom_has("reject reply", MT_SMTPREPLY, "554", "5.7.1", "Rejected: 100%% bad")

check(message("later-me") == SMFIR_REPLYCODE, "tempfail gives a reply code")
eom_has("tempfail reply", MT_SMTPREPLY, "451", "4.7.1",
        "Message cannot be scanned now, try again later")

check(message("hold-me") == SMFIR_CONTINUE, "quarantine continues")
eom_has("quarantine reason", MT_QUARANTINE, "held for review")

check(message("discard-me") == SMFIR_DISCARD, "discard")

check(message("change-me") == SMFIR_CONTINUE, "change continues")
eom_has("new Subject inserted", MT_HDRINSERT, "Subject", " changed")
eom_has("old Subject deleted", MT_HDRDELETE, "Subject")

check(message("plain") == SMFIR_CONTINUE, "accept")
eom_has("header added with leading space", MT_HDRADD, "X-Scanned", " mxscan")

mt.disconnect(conn)
mt.echo("mt_actions: all checks passed")
