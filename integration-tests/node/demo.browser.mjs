// Loads the demo page (/demo) in headless Chromium (Debian's, driven by playwright-core) and
// waits until it shows the messages the test publishes over MQTT and AMQP.
// Protocol with integration-tests/python/test_demo_page.py: prints READY once the page is
// connected, then exits 0 when every text given on the command line is on the board.
// Usage: node demo.browser.mjs http://127.0.0.1:PORT/demo TEXT...
import { chromium } from 'playwright-core';

const [url, ...texts] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(url);
  await page.waitForSelector('#status.connected', { timeout: 15000 });
  console.log('READY');
  for (const text of texts) {
    await page.waitForSelector(`#board td.body:text-is("${text}")`, { timeout: 15000 });
    console.log('SEEN', text);
  }
  const rows = await page.$$eval('#board tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  console.log('BOARD', JSON.stringify(rows));
} finally {
  await browser.close();
}
