import { expect } from "@playwright/test";
import { execFileSync } from "child_process";
import { createHash } from "crypto";

import { password, signUp, test } from "./kit";

// The account page in real Chromium: the audit log, a setting, the export of everything
// (checked against its manifest), and deleting the account after the password, again.

/** One entry of a ZIP (`unzip -p`). */
function entry(zip: string, name: string): Buffer {
  return execFileSync("unzip", ["-p", zip, name], { maxBuffer: 64 << 20 });
}

test("the account page shows the audit log, exports everything and deletes the account", async ({ page }) => {
  const email = `account-${Date.now()}@example.org`;
  await signUp(page, email);
  await page.getByTestId("account-link").click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByTestId("account-email")).toHaveText(email);
  await expect(page.getByTestId("sign-in-methods")).toContainText("Email and password");
  const log = page.getByTestId("audit-log");
  await expect(log.locator('[data-kind="account_created"]')).toHaveCount(1);
  await expect(log.locator('[data-kind="account_created"] td').nth(2)).toHaveText("127.0.0.1");

  // the export: a download, every file in the manifest with its SHA-256
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("export").click()]);
  expect(download.suggestedFilename()).toMatch(/^neurovol-export-\d+\.zip$/);
  const file = await download.path();
  const names = execFileSync("unzip", ["-Z1", file]).toString().split("\n").filter(Boolean).sort();
  expect(names).toEqual(["README.md", "account.json", "audit_log.json", "manifest.json"]);
  const manifest = JSON.parse(entry(file, "manifest.json").toString());
  expect(manifest.schema_version).toBe(1);
  expect(manifest.files.map((f: { path: string }) => f.path).sort()).toEqual(["README.md", "account.json", "audit_log.json"]);
  for (const f of manifest.files) {
    const bytes = entry(file, f.path);
    expect(bytes.length, f.path).toBe(f.bytes);
    expect(createHash("sha256").update(bytes).digest("hex"), f.path).toBe(f.sha256);
  }
  const account = JSON.parse(entry(file, "account.json").toString());
  expect(account.email).toBe(email);
  const events = JSON.parse(entry(file, "audit_log.json").toString());
  expect(events.map((e: { kind: string }) => e.kind)).toContain("account_created");
  await page.reload();
  await expect(log.locator('[data-kind="export_downloaded"]')).toHaveCount(1);

  // a wrong password deletes nothing
  await page.getByLabel("Your password, to confirm").fill("not my password at all");
  await page.getByTestId("delete-understood").check();
  await page.getByTestId("delete-account").click();
  await expect(page.getByTestId("form-notice")).toHaveText("The password is not correct; nothing was changed.");
  await expect(log.locator('[data-kind="password_check_failed"]')).toHaveCount(1);

  // the right one deletes the account at once and signs the browser out
  await page.getByLabel("Your password, to confirm").fill(password);
  await page.getByTestId("delete-understood").check();
  await page.getByTestId("delete-account").click();
  await expect(page).toHaveURL(/\/deleted\/[0-9a-f]{32}$/);
  await expect(page.getByRole("heading", { name: "Deletion receipt" })).toBeVisible();
  await expect(page.getByTestId("receipt-status")).toHaveAttribute("data-pending", "false");
  await expect(page.getByTestId("receipt-status")).toContainText("An account was deleted");
  await expect(page.getByRole("link", { name: "Log in" })).toBeVisible();

  // the account is gone: its email and password no longer sign in
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("form-notice")).toHaveText("The email or password is not correct.");
});
