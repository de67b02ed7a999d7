import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import type { Doc, Id } from "./_generated/dataModel";
import type { MutationCtx } from "./_generated/server";
import { mutation, query } from "./_generated/server";

const status = v.union(v.literal("todo"), v.literal("in_progress"), v.literal("done"));
const priority = v.union(
  v.literal("low"),
  v.literal("medium"),
  v.literal("high"),
  v.literal("urgent"),
);

async function owned(ctx: MutationCtx, userId: string, taskId: Id<"tasks">): Promise<Doc<"tasks">> {
  const task = await ctx.db.get(taskId);
  if (task === null || task.userId !== userId) {
    throw new Error(`task ${taskId} not found`);
  }
  return task;
}

/** A user's tasks, optionally of one status, soonest due first (undated last). */
export const listForUser = query({
  args: { userId: v.string(), status: v.optional(status) },
  handler: async (ctx, args) => {
    const tasks = args.status === undefined
      ? await ctx.db.query("tasks").withIndex("by_user", (q) => q.eq("userId", args.userId)).collect()
      : await ctx.db
          .query("tasks")
          .withIndex("by_user_status", (q) => q.eq("userId", args.userId).eq("status", args.status!))
          .collect();
    const due = (task: Doc<"tasks">) => task.dueDate ?? Number.MAX_SAFE_INTEGER;
    return tasks.sort((a, b) => due(a) - due(b) || a.createdAt - b.createdAt);
  },
});

/** One page of a user's tasks, newest first. */
export const listPage = query({
  args: { userId: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { userId, paginationOpts }) =>
    ctx.db
      .query("tasks")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .order("desc")
      .paginate(paginationOpts),
});

export const create = mutation({
  args: {
    userId: v.string(),
    title: v.string(),
    description: v.optional(v.string()),
    priority: v.optional(priority),
    dueDate: v.optional(v.number()),
  },
  handler: async (ctx, args) => {
    const now = Date.now();
    return ctx.db.insert("tasks", {
      ...args,
      status: "todo",
      priority: args.priority ?? "medium",
      createdAt: now,
      updatedAt: now,
    });
  },
});

export const update = mutation({
  args: {
    userId: v.string(),
    taskId: v.id("tasks"),
    title: v.optional(v.string()),
    description: v.optional(v.string()),
    status: v.optional(status),
    priority: v.optional(priority),
    dueDate: v.optional(v.number()),
  },
  handler: async (ctx, { userId, taskId, ...changes }) => {
    const task = await owned(ctx, userId, taskId);
    const now = Date.now();
    const completedAt =
      changes.status === undefined ? task.completedAt : changes.status === "done" ? now : undefined;
    await ctx.db.patch(taskId, { ...changes, completedAt, updatedAt: now });
    return null;
  },
});

export const remove = mutation({
  args: { userId: v.string(), taskId: v.id("tasks") },
  handler: async (ctx, { userId, taskId }) => {
    await owned(ctx, userId, taskId);
    await ctx.db.delete(taskId);
    return null;
  },
});
