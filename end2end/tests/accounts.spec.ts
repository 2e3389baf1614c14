import { expect } from "@playwright/test";

import { password, signUp, test } from "./kit";

// A fresh account per run: the e2e server starts on an empty data directory, but a
// unique address keeps reruns against a reused server independent.
const email = `e2e-${Date.now()}@example.org`;

test.describe.configure({ mode: "serial" });

test("landing page renders on the server and links to sign-up", async ({ page }) => {
  const response = await page.goto("/");
  expect(response?.status()).toBe(200);
  await expect(page.getByRole("heading", { name: "Your brain MRI, measured." })).toBeVisible();
  await expect(page.getByRole("link", { name: "Create an account" })).toHaveAttribute("href", "/signup");
});

test("hydration: the password toggle and live rules work without a page load", async ({ page }) => {
  await page.goto("/signup");
  // Wait until the WASM has hydrated the page (the toggle only works then).
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  // A marker on window survives only if no navigation/reload happens.
  await page.evaluate(() => ((window as any).__marker = "still-here"));

  const field = page.getByLabel("Password", { exact: true });
  await expect(field).toHaveAttribute("type", "password");
  await page.getByTestId("toggle-password").click();
  await expect(field).toHaveAttribute("type", "text");
  await expect(page.getByTestId("toggle-password")).toHaveText("Hide");

  const rules = page.getByTestId("password-rules");
  await expect(rules.locator("li.ok")).toHaveCount(0);
  await field.fill("short");
  await expect(rules.locator("li.ok")).not.toHaveCount(0);
  await expect(rules.getByText("At least 12 characters")).not.toHaveClass(/ok/);
  await field.fill(password);
  await expect(rules.locator("li.ok")).toHaveCount(5);

  expect(await page.evaluate(() => (window as any).__marker)).toBe("still-here");
});

test("sign up lands on the empty home page", async ({ page }) => {
  await signUp(page, email);
  await expect(page.getByRole("heading", { name: "My scans" })).toBeVisible();
  await expect(page.getByTestId("scans-empty")).toContainText("No scans yet");
  await expect(page.locator(".who")).toHaveText(email);
});

test("log out, then log in again", async ({ page }) => {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/home$/);

  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page).toHaveURL(/\/login\?notice=signed_out$/);
  await expect(page.getByTestId("form-notice")).toHaveText("You have been logged out.");

  // Signed out: home sends the visitor to sign in, and back to home afterwards.
  await page.goto("/home");
  await expect(page).toHaveURL(/\/login\?next=\/home$/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/home$/);
  await expect(page.getByTestId("scans-empty")).toBeVisible();
});

test("a wrong password shows an error and does not sign in", async ({ page }) => {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill("not the right password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/login\?error=invalid$/);
  await expect(page.getByTestId("form-notice")).toHaveText("The email or password is not correct.");
  await expect(page.getByRole("button", { name: "Log in" })).toBeVisible();
});

test("sign-up rules are enforced by the server too", async ({ page }) => {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(`weak-${Date.now()}@example.org`);
  await page.getByLabel("Password", { exact: true }).fill("short");
  await page.getByLabel("Repeat password").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/signup\?error=password_short$/);
  await expect(page.getByTestId("form-notice")).toContainText("at least 12 characters");
});

test("the privacy page states the running configuration", async ({ page }) => {
  await page.goto("/privacy");
  await expect(page.getByTestId("removed-attributes")).toContainText("PatientName");
  await expect(page.getByTestId("removed-attributes").locator("li")).toHaveCount(32);
  await expect(page.getByText("an SQLite database file on this server")).toBeVisible();
});

test("the privacy page renders and hydrates under the Content-Security-Policy", async ({ page }) => {
  const response = await page.goto("/privacy");
  expect(response?.headers()["content-security-policy"]).toContain("'nonce-");
  await page.waitForFunction(() => (window as any).__neurovol_hydrated === true);
  await expect(page.getByRole("heading", { level: 1 })).toBeVisible();
});
