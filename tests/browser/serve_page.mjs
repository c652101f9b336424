// Drives the explorer page of a running `recembed serve` in headless Debian Chromium (playwright-core, no
// browser download): pick a user, read the recommendations and history, search an item, read its similar
// items, take a screenshot. Prints one JSON object.
//   node tests/browser/serve_page.mjs URL USER_ID ITEM_QUERY SCREENSHOT.png PLAYWRIGHT_DIR
import { launch } from "./launch.mjs";

const [url, userId, itemQuery, screenshot, playwrightDir] = process.argv.slice(2);

const { context, close } = await launch(playwrightDir);
const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => ({ item_id: e.dataset.itemId,
  text: e.firstChild ? e.firstChild.textContent : "" })));
try {
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready='1']", { timeout: 20000 });
  await page.fill("#user-input", userId);
  await page.click("#user-go");
  await page.waitForSelector("#recs li[data-item-id]", { timeout: 20000 });
  await page.waitForSelector("#history li[data-item-id]", { timeout: 20000 });
  await page.fill("#item-input", itemQuery);
  await page.click("#item-go");
  await page.waitForSelector("#similar li[data-item-id]", { timeout: 20000 });
  const result = {
    info: await page.textContent("#info"),
    recs: await texts(page, "#recs li[data-item-id]"),
    history: await texts(page, "#history li[data-item-id]"),
    matches: await texts(page, "#matches li[data-item-id]"),
    similar: await texts(page, "#similar li[data-item-id]"),
    similarTitle: await page.textContent("#similar-title"),
    errors,
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(result));
} finally {
  await close();
}
