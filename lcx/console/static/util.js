// Pure helpers of the console (no DOM state of their own).

/** The claims of a JWT (not verified: the server does that), or null. */
export function claimsOf(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** The last seq seen without a gap from 1: what RESUME must name so nothing is missed. */
export function contiguousSeq(messages) {
  let seq = 0;
  while (messages.has(seq + 1)) seq += 1;
  return seq;
}

/** Put an element carrying data-seq into a list kept in seq order. */
export function insertBySeq(list, item, seq) {
  for (const child of list.children) {
    const other = Number(child.dataset.seq);
    if (other === seq) {
      child.replaceWith(item);
      return;
    }
    if (other > seq) {
      list.insertBefore(item, child);
      return;
    }
  }
  list.append(item);
}

/** "m:ss" (or "h:mm:ss") since an RFC 3339 time. */
export function formatWait(since) {
  const seconds = Math.max(0, Math.floor((Date.now() - new Date(since).getTime()) / 1000));
  if (Number.isNaN(seconds)) return "";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Canned responses whose shortcut (or title) starts with, or contains, the query. */
export function cannedMatches(canned, query) {
  const wanted = query.trim().toLowerCase();
  const starts = canned.filter((c) => c.shortcut.startsWith(wanted));
  const contains = canned.filter((c) => !c.shortcut.startsWith(wanted) &&
    (c.shortcut.includes(wanted) || c.title.toLowerCase().includes(wanted)));
  return [...starts, ...contains].slice(0, 10);
}
