// Durable documents of one deployment: a snapshot file plus an append-only log of
// committed write sets. Every committed transaction is appended (synchronously) before
// its HTTP response is sent, so a killed process loses no acknowledged write; the log is
// folded into the snapshot when it grows and at shutdown. Values are stored in Convex
// JSON so int64 and bytes survive. Each log line carries the tag of the call that committed
// it (the last RECENT_TAGS tags are kept in the snapshot too), so after a worker is replaced
// the harness can tell whether an unanswered call had committed.

import fs from "node:fs";
import path from "node:path";

const COMPACT_MIN_BYTES = 1 << 20;
const RECENT_TAGS = 256;

/** Writes `text` to `file` atomically (temporary file + rename). */
export function writeAtomic(file, text, mode) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text, mode === undefined ? undefined : { mode });
  fs.renameSync(tmp, file);
}

/**
 * Which of `tags` a deployment's files record as committed (log lines or the snapshot's
 * recent tags). Read by the main thread after a worker was stopped, without loading any
 * document; tags are random, so a text search is exact.
 */
export function committedTags(dir, tags) {
  const found = new Set();
  for (const file of ["documents.log", "documents.json"]) {
    let text;
    try {
      text = fs.readFileSync(path.join(dir, file), "utf8");
    } catch {
      continue;
    }
    for (const tag of tags) if (text.includes(JSON.stringify(tag))) found.add(tag);
  }
  return found;
}

export class DocumentStore {
  constructor(dir, lib) {
    this.dir = dir;
    this.lib = lib;
    this.snapshotFile = path.join(dir, "documents.json");
    this.logFile = path.join(dir, "documents.log");
    this.logBytes = 0;
    this.snapshotBytes = 0;
    this.recentTags = [];
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Reads snapshot + log: {documents: {id: doc}, nextDocId, lastCreationTime}. */
  load() {
    const { jsonToConvex } = this.lib;
    const documents = {};
    let nextDocId = 10000;
    let lastCreationTime = 0;
    if (fs.existsSync(this.snapshotFile)) {
      const text = fs.readFileSync(this.snapshotFile, "utf8");
      this.snapshotBytes = text.length;
      const snap = JSON.parse(text);
      nextDocId = snap.nextDocId ?? nextDocId;
      lastCreationTime = snap.lastCreationTime ?? lastCreationTime;
      this.recentTags = Array.isArray(snap.recentTags) ? snap.recentTags : [];
      for (const [id, doc] of snap.documents ?? []) documents[id] = jsonToConvex(doc);
    }
    if (fs.existsSync(this.logFile)) {
      const text = fs.readFileSync(this.logFile, "utf8");
      this.logBytes = text.length;
      for (const line of text.split("\n")) {
        if (!line) continue;
        let entry;
        try {
          entry = JSON.parse(line);
        } catch {
          break; // a torn final line from a crash mid-append: everything before it is whole
        }
        for (const [id, doc] of entry.w) {
          if (doc === null) delete documents[id];
          else documents[id] = jsonToConvex(doc);
        }
        if (entry.k) this._remember(entry.k);
        nextDocId = Math.max(nextDocId, entry.n ?? 0);
        lastCreationTime = Math.max(lastCreationTime, entry.c ?? 0);
      }
    }
    return { documents, nextDocId, lastCreationTime };
  }

  _remember(tag) {
    this.recentTags.push(tag);
    if (this.recentTags.length > RECENT_TAGS * 2) this.recentTags = this.recentTags.slice(-RECENT_TAGS);
  }

  /**
   * Appends one committed write set (tagged with the committing call, or null); returns
   * true when the log should be compacted.
   */
  append(writes, nextDocId, lastCreationTime, tag = null) {
    const { convexToJson } = this.lib;
    const line =
      JSON.stringify({
        w: writes.map(([id, doc]) => [id, doc === null ? null : convexToJson(doc)]),
        n: nextDocId,
        c: lastCreationTime,
        ...(tag ? { k: tag } : {}),
      }) + "\n";
    fs.appendFileSync(this.logFile, line);
    if (tag) this._remember(tag);
    this.logBytes += line.length;
    return this.logBytes > Math.max(COMPACT_MIN_BYTES, this.snapshotBytes);
  }

  /** Folds the current documents into a new snapshot and empties the log. */
  compact(documents, nextDocId, lastCreationTime) {
    const { convexToJson } = this.lib;
    const rows = Object.entries(documents).map(([id, doc]) => [id, convexToJson(doc)]);
    const recentTags = this.recentTags.slice(-RECENT_TAGS);
    const text = JSON.stringify({ version: 1, nextDocId, lastCreationTime, recentTags, documents: rows });
    writeAtomic(this.snapshotFile, text);
    this.snapshotBytes = text.length;
    // Replaying an old log over the new snapshot is idempotent, so a crash here is safe.
    fs.writeFileSync(this.logFile, "");
    this.logBytes = 0;
  }
}
