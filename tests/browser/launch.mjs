// Shared by the page tests: headless Debian Chromium through playwright-core (no browser download), in a
// throw-away profile. `close()` shuts the browser and removes the profile.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export async function launch(playwrightDir) {
  const require = createRequire(pathToFileURL(join(playwrightDir, "node_modules") + "/"));
  const { chromium } = require("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "recembed-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}
