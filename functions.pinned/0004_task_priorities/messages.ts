import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import type { Doc, Id } from "./_generated/dataModel";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { mutation, query } from "./_generated/server";

const role = v.union(v.literal("user"), v.literal("assistant"), v.literal("system"));

async function conversationOf(
  ctx: QueryCtx | MutationCtx,
  userId: string,
  conversationId: Id<"conversations">,
): Promise<Doc<"conversations">> {
  const conversation = await ctx.db.get(conversationId);
  if (conversation === null || conversation.userId !== userId) {
    throw new Error(`conversation ${conversationId} not found`);
  }
  return conversation;
}

async function owned(ctx: MutationCtx, userId: string, messageId: Id<"messages">): Promise<Doc<"messages">> {
  const message = await ctx.db.get(messageId);
  if (message === null || message.userId !== userId) {
    throw new Error(`message ${messageId} not found`);
  }
  return message;
}

/** Every message a user wrote or received, newest first (bounded: use `listPage` to scroll). */
export const listForUser = query({
  args: { userId: v.string(), limit: v.optional(v.number()) },
  handler: async (ctx, { userId, limit }) =>
    ctx.db
      .query("messages")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .order("desc")
      .take(Math.min(Math.max(1, limit ?? 100), 1000)),
});

/** One page of a conversation's messages in order. */
export const listPage = query({
  args: {
    userId: v.string(),
    conversationId: v.id("conversations"),
    paginationOpts: paginationOptsValidator,
  },
  handler: async (ctx, { userId, conversationId, paginationOpts }) => {
    await conversationOf(ctx, userId, conversationId);
    return ctx.db
      .query("messages")
      .withIndex("by_conversation_created", (q) => q.eq("conversationId", conversationId))
      .paginate(paginationOpts);
  },
});

export const create = mutation({
  args: {
    userId: v.string(),
    conversationId: v.id("conversations"),
    role,
    content: v.string(),
    model: v.optional(v.string()),
  },
  handler: async (ctx, args) => {
    const conversation = await conversationOf(ctx, args.userId, args.conversationId);
    const now = Date.now();
    const id = await ctx.db.insert("messages", {
      ...args,
      status: "complete",
      createdAt: now,
      updatedAt: now,
    });
    await ctx.db.patch(conversation._id, {
      lastMessageAt: now,
      messageCount: (conversation.messageCount ?? 0) + 1,
      updatedAt: now,
    });
    return id;
  },
});

export const update = mutation({
  args: { userId: v.string(), messageId: v.id("messages"), content: v.string() },
  handler: async (ctx, { userId, messageId, content }) => {
    await owned(ctx, userId, messageId);
    await ctx.db.patch(messageId, { content, updatedAt: Date.now() });
    return null;
  },
});

export const remove = mutation({
  args: { userId: v.string(), messageId: v.id("messages") },
  handler: async (ctx, { userId, messageId }) => {
    const message = await owned(ctx, userId, messageId);
    await ctx.db.delete(messageId);
    const conversation = await ctx.db.get(message.conversationId);
    if (conversation !== null) {
      await ctx.db.patch(conversation._id, {
        messageCount: Math.max(0, (conversation.messageCount ?? 1) - 1),
        updatedAt: Date.now(),
      });
    }
    return null;
  },
});
