import { expect, Page } from "@playwright/test";

import { oidc } from "../servers";
import { password, signUp, test } from "./kit";

// Google sign-in in real Chromium against a real OpenID provider on loopback
// (oidc-provider.mjs, started by playwright.config.ts): sign in, delete the account by a
// fresh Google sign-in, a new sign-in makes a fresh empty account; and a password account
// links Google, then signs in either way.

/** How the provider's next ID tokens are made (a subject and a verified email). */
async function scenario(sub: string, email: string) {
  const resp = await fetch(`${oidc.control}/scenario`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "ok", sub, email }),
  });
  expect(resp.status).toBe(204);
}

async function continueWithGoogle(page: Page) {
  await page.goto("/login");
  await page.getByRole("button", { name: "Continue with Google" }).click();
}

async function logOut(page: Page) {
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page).toHaveURL(/\/login/);
}

test("Google sign-in, account deletion by a fresh Google sign-in, and a fresh account after", async ({ page }) => {
  const stamp = Date.now();
  const email = `google-${stamp}@example.org`;
  await scenario(`e2e-sub-${stamp}`, email);

  await continueWithGoogle(page);
  await expect(page).toHaveURL(/\/home$/);
  await page.getByTestId("account-link").click();
  await expect(page.getByTestId("account-email")).toHaveText(email);
  await expect(page.getByTestId("sign-in-methods")).toHaveText("Google");
  await expect(page.getByTestId("google-only")).toBeVisible();
  const log = page.getByTestId("audit-log");
  await expect(log.locator('[data-kind="google_sign_in_succeeded"]')).toHaveCount(1);

  // no password to give: the deletion is confirmed by Google, with the same subject
  await page.getByTestId("delete-understood").check();
  await page.getByTestId("delete-account").click();
  await expect(page).toHaveURL(/\/deleted\/[0-9a-f]{32}$/);
  await expect(page.getByTestId("receipt-status")).toContainText("An account was deleted");

  // a second sign-in makes a fresh, empty account
  await continueWithGoogle(page);
  await expect(page).toHaveURL(/\/home$/);
  await page.getByTestId("account-link").click();
  await expect(page.getByTestId("account-scans")).toHaveText("0");
  await expect(log.locator('[data-kind="account_created"]')).toHaveCount(1);
  await expect(log.locator('[data-kind="google_sign_in_succeeded"]')).toHaveCount(1);
  await expect(log.locator("tr[data-testid=audit-row]")).toHaveCount(2);
});

test("a password account links Google and signs in with either", async ({ page }) => {
  const stamp = Date.now();
  const email = `linked-${stamp}@example.org`;
  await signUp(page, email);
  await logOut(page);

  // Google with the same email does not link by itself
  await scenario(`e2e-linked-${stamp}`, email);
  await continueWithGoogle(page);
  await expect(page.getByText("Sign in with your password, then link Google")).toBeVisible();

  // signed in with the password, the account page links Google after the password again
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/home$/);
  await page.getByTestId("account-link").click();
  await page.getByLabel("Your password, to link Google").fill(password);
  await page.getByTestId("google-link").click();
  await expect(page).toHaveURL(/\/account\?notice=google_linked/);
  await expect(page.getByTestId("form-notice")).toContainText("Google sign-in is linked");
  await expect(page.getByTestId("sign-in-methods")).toContainText("Email and password");
  await expect(page.getByTestId("sign-in-methods")).toContainText("Google");
  await expect(page.getByTestId("audit-log").locator('[data-kind="google_linked"]')).toHaveCount(1);

  // either way in reaches the same account
  await logOut(page);
  await continueWithGoogle(page);
  await expect(page).toHaveURL(/\/home$/);
  await page.getByTestId("account-link").click();
  await expect(page.getByTestId("account-email")).toHaveText(email);
  await logOut(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/home$/);
});
