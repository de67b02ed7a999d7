import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import type { Doc, Id } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { mutation, query } from "./_generated/server";

/** The note `noteId` if `userId` owns it; an error otherwise (never another user's note). */
async function owned(ctx: MutationCtx, userId: string, noteId: Id<"notes">): Promise<Doc<"notes">> {
  const note = await ctx.db.get(noteId);
  if (note === null || note.userId !== userId) {
    throw new Error(`note ${noteId} not found`);
  }
  return note;
}

/** A user's notes, pinned ones first, then the most recently updated. */
export const listForUser = query({
  args: { userId: v.string(), includeArchived: v.optional(v.boolean()) },
  handler: async (ctx, { userId, includeArchived }) => {
    const notes = await ctx.db
      .query("notes")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .collect();
    return notes
      .filter((note) => includeArchived === true || note.isArchived !== true)
      .sort((a, b) =>
        Number(b.isPinned === true) - Number(a.isPinned === true) || b.updatedAt - a.updatedAt,
      );
  },
});

/** One page of a user's notes, newest first (`paginationOpts` as `usePaginatedQuery` sends). */
export const listPage = query({
  args: { userId: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { userId, paginationOpts }) =>
    ctx.db
      .query("notes")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .order("desc")
      .paginate(paginationOpts),
});

export const create = mutation({
  args: { userId: v.string(), title: v.string(), body: v.string() },
  handler: async (ctx, { userId, title, body }) => {
    const now = Date.now();
    return ctx.db.insert("notes", { userId, title, body, createdAt: now, updatedAt: now });
  },
});

export const update = mutation({
  args: {
    userId: v.string(),
    noteId: v.id("notes"),
    title: v.optional(v.string()),
    body: v.optional(v.string()),
    isPinned: v.optional(v.boolean()),
    isArchived: v.optional(v.boolean()),
  },
  handler: async (ctx, { userId, noteId, ...changes }) => {
    await owned(ctx, userId, noteId);
    await ctx.db.patch(noteId, { ...changes, updatedAt: Date.now() });
    return null;
  },
});

export const remove = mutation({
  args: { userId: v.string(), noteId: v.id("notes") },
  handler: async (ctx, { userId, noteId }) => {
    await owned(ctx, userId, noteId);
    await ctx.db.delete(noteId);
    return null;
  },
});
