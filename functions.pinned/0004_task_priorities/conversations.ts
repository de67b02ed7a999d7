import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import type { Doc, Id } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { mutation, query } from "./_generated/server";

async function owned(
  ctx: MutationCtx,
  userId: string,
  conversationId: Id<"conversations">,
): Promise<Doc<"conversations">> {
  const conversation = await ctx.db.get(conversationId);
  if (conversation === null || conversation.userId !== userId) {
    throw new Error(`conversation ${conversationId} not found`);
  }
  return conversation;
}

/** A user's conversations, most recent activity first (archived ones only on request). */
export const listForUser = query({
  args: { userId: v.string(), archived: v.optional(v.boolean()) },
  handler: async (ctx, { userId, archived }) => {
    const conversations = await ctx.db
      .query("conversations")
      .withIndex("by_user_last_message", (q) => q.eq("userId", userId))
      .order("desc")
      .collect();
    return conversations.filter((c) => (c.isArchived === true) === (archived === true));
  },
});

/** One page of a user's conversations, most recent activity first. */
export const listPage = query({
  args: { userId: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { userId, paginationOpts }) =>
    ctx.db
      .query("conversations")
      .withIndex("by_user_last_message", (q) => q.eq("userId", userId))
      .order("desc")
      .paginate(paginationOpts),
});

export const create = mutation({
  args: { userId: v.string(), title: v.optional(v.string()), systemPrompt: v.optional(v.string()) },
  handler: async (ctx, args) => {
    const now = Date.now();
    return ctx.db.insert("conversations", {
      ...args,
      messageCount: 0,
      lastMessageAt: now,
      createdAt: now,
      updatedAt: now,
    });
  },
});

export const update = mutation({
  args: {
    userId: v.string(),
    conversationId: v.id("conversations"),
    title: v.optional(v.string()),
    systemPrompt: v.optional(v.string()),
    isArchived: v.optional(v.boolean()),
    isPinned: v.optional(v.boolean()),
  },
  handler: async (ctx, { userId, conversationId, ...changes }) => {
    await owned(ctx, userId, conversationId);
    await ctx.db.patch(conversationId, { ...changes, updatedAt: Date.now() });
    return null;
  },
});

/** Deletes the conversation and its messages (a long conversation: call again until done). */
export const remove = mutation({
  args: { userId: v.string(), conversationId: v.id("conversations") },
  handler: async (ctx, { userId, conversationId }) => {
    await owned(ctx, userId, conversationId);
    const messages = await ctx.db
      .query("messages")
      .withIndex("by_conversation", (q) => q.eq("conversationId", conversationId))
      .take(1000);
    for (const message of messages) {
      await ctx.db.delete(message._id);
    }
    if (messages.length < 1000) {
      await ctx.db.delete(conversationId);
    }
    return { done: messages.length < 1000 };
  },
});
