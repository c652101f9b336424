// Opens /docs (Swagger UI) and /redoc of a running `recembed serve` in headless Debian Chromium with every
// request to a host other than the server's refused (no network: the assets must come from the server itself),
// waits for the rendered operations, takes a screenshot of /docs. Prints one JSON object.
//   node tests/browser/serve_docs.mjs URL SCREENSHOT.png PLAYWRIGHT_DIR
import { launch } from "./launch.mjs";

const [url, screenshot, playwrightDir] = process.argv.slice(2);
const local = new URL(url).host;

const { context, close } = await launch(playwrightDir);
const blocked = [];
let current = "/docs";
const served = [];
await context.route("**/*", (route) => {
  const target = new URL(route.request().url());
  if (target.protocol === "data:" || target.protocol === "blob:" || target.host === local) {
    served.push(target.pathname);
    return route.continue();
  }
  blocked.push({ url: target.href, type: route.request().resourceType(), page: current });
  return route.abort("internetdisconnected");
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${url}/docs`, { waitUntil: "load" });
  await page.waitForSelector(".swagger-ui .opblock", { timeout: 30000 });
  const operations = await page.$$eval(".swagger-ui .opblock .opblock-summary-path",
    (els) => els.map((e) => e.getAttribute("data-path") || e.textContent.trim()));
  const title = await page.textContent(".swagger-ui .info .title");
  await page.screenshot({ path: screenshot, fullPage: true });
  current = "/redoc";
  await page.goto(`${url}/redoc`, { waitUntil: "load" });
  let redoc = 0;
  try {
    await page.waitForSelector("[data-section-id^='operation/'], .redoc-wrap h2", { timeout: 30000 });
    redoc = await page.$$eval("[data-section-id^='operation/']", (els) => els.length);
  } catch (e) {
    errors.push(`redoc: ${e}`);
  }
  console.log(JSON.stringify({ operations, title, redoc, blocked, served, errors }));
} finally {
  await close();
}
