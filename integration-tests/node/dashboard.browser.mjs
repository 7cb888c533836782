// Drives the management dashboard (/dashboard/) in headless Chromium (Debian's, via playwright-core)
// and checks what it shows against what the caller set up. Prints one line of JSON (a summary of
// what the page showed, with a "mismatches" list) on stdout; the page's console goes to stderr.
// Exits 0 when nothing mismatched, 1 otherwise, 2 on bad usage.
//
// Environment:
//   JUNCTION_HTTP_URL           http://127.0.0.1:PORT (the broker's HTTP listener)      required
//   JUNCTION_AMQP_URL           amqp://guest:guest@127.0.0.1:PORT: the script opens a connection of
//                               its own, finds it on the Connections page and closes it with the
//                               Close button (expects the client to see the server close it)  optional
//   JUNCTION_DASH_QUEUE         a queue in vhost "/" that the caller filled                    required
//   JUNCTION_DASH_QUEUE_COUNT   how many messages it holds (the Queues page must show it)      required
//   JUNCTION_DASH_MQTT_CLIENT   an MQTT client id that must be listed on the MQTT clients page
//   JUNCTION_DASH_SKIP_MQTT=1   skip the MQTT page (e.g. against RabbitMQ, which has no /api/mqtt)
//   JUNCTION_DASH_SKIP_CREATE=1 skip creating (and then deleting) a queue through the UI
//   JUNCTION_DASH_USER / JUNCTION_DASH_PASSWORD   default guest / guest
//   JUNCTION_DASH_TIMEOUT_MS    how long to wait for each thing to show, default 20000
//   CHROMIUM                    default /usr/bin/chromium
//
// Side effects on the broker: the queue ends up with COUNT + 1 messages (one test message is
// published to it through the UI; "Peek" requeues what it reads), and a queue
// "dashboard-created-<pid>" is created and deleted again through the UI.
import { chromium } from 'playwright-core';

const env = process.env;
const base = (env.JUNCTION_HTTP_URL || '').replace(/\/+$/, '');
const user = env.JUNCTION_DASH_USER || 'guest';
const password = env.JUNCTION_DASH_PASSWORD || 'guest';
const queue = env.JUNCTION_DASH_QUEUE;
const expectedCount = Number(env.JUNCTION_DASH_QUEUE_COUNT);
const mqttClient = env.JUNCTION_DASH_MQTT_CLIENT;
const skipMqtt = env.JUNCTION_DASH_SKIP_MQTT === '1';
const skipCreate = env.JUNCTION_DASH_SKIP_CREATE === '1';
const amqpUrl = env.JUNCTION_AMQP_URL;
const T = Number(env.JUNCTION_DASH_TIMEOUT_MS) || 20000;

if (!base || !queue || !Number.isInteger(expectedCount) || (!skipMqtt && !mqttClient)) {
  console.error('usage: JUNCTION_HTTP_URL=http://127.0.0.1:PORT JUNCTION_DASH_QUEUE=q JUNCTION_DASH_QUEUE_COUNT=N '
    + '(JUNCTION_DASH_MQTT_CLIENT=id | JUNCTION_DASH_SKIP_MQTT=1) [JUNCTION_AMQP_URL=amqp://...] node dashboard.browser.mjs');
  process.exit(2);
}

const summary = { url: `${base}/dashboard/`, mismatches: [] };
const mismatch = (step, what) => summary.mismatches.push(`${step}: ${what}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs one step; a thrown error (e.g. a selector timeout) is recorded as a mismatch.
async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    mismatch(name, String(e.message || e).split('\n')[0]);
  }
}

// Polls fn() until ok(value) or the timeout; returns { ok, value }.
async function poll(fn, ok, timeout = T) {
  const end = Date.now() + timeout;
  for (;;) {
    let value;
    try { value = await fn(); } catch { value = undefined; }
    if (ok(value)) return { ok: true, value };
    if (Date.now() > end) return { ok: false, value };
    await sleep(200);
  }
}

const cells = (row) => row.locator('td[data-col]').evaluateAll(
  (tds) => Object.fromEntries(tds.map((td) => [td.dataset.col, td.textContent.trim()])));

const executablePath = env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(T);
  page.on('console', (m) => console.error('page:', m.text()));
  page.on('pageerror', (e) => mismatch('page', `uncaught error: ${e.message}`));
  page.on('dialog', (d) => d.accept()); // confirm() of Close / Delete
  const id = (testid) => page.getByTestId(testid);
  const text = async (testid) => (await id(testid).first().textContent()).trim();

  await step('login with a wrong password', async () => {
    await page.goto(summary.url);
    await id('login-username').fill(user);
    await id('login-password').fill(`${password}-wrong`);
    await id('login-submit').click();
    await id('login-error').waitFor({ state: 'visible' });
    summary.bad_login_error = await text('login-error');
  });

  await step('login', async () => {
    await id('login-username').fill(user);
    await id('login-password').fill(password);
    await id('login-submit').click();
    await id('whoami').waitFor({ state: 'visible' });
    const who = await poll(() => text('whoami'), (v) => !!v);
    summary.whoami = who.value;
    if (!String(who.value).startsWith(user)) mismatch('login', `whoami shows "${who.value}", not ${user}`);
  });

  await step('overview', async () => {
    await page.goto(`${summary.url}#/overview`);
    const shown = await poll(() => text('total-queues'), (v) => /^\d+$/.test(v));
    if (!shown.ok) throw new Error(`total-queues never showed a number (${shown.value})`);
    const totals = {};
    for (const k of ['connections', 'channels', 'queues', 'exchanges', 'consumers', 'messages', 'messages-ready', 'messages-unacked']) {
      totals[k] = Number(await text(`total-${k}`));
    }
    summary.totals = totals;
    summary.alarms = { memory: await text('alarm-memory'), disk: await text('alarm-disk') };
    summary.listeners = await page.locator('[data-testid="listeners"] tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent).join(' ')));
    if (totals.queues < 1) mismatch('overview', `total-queues is ${totals.queues} but ${queue} exists`);

    const chart = id('chart-rates');
    const points = async () => Number(await chart.getAttribute('data-points'));
    const before = await points();
    const grown = await poll(points, (n) => n > before && n >= 2);
    summary.chart_rates_points = { before, after: grown.value };
    if (!grown.ok) mismatch('overview', `chart-rates data-points did not grow (${before} -> ${grown.value})`);
    summary.chart_connections_points = Number(await id('chart-connections').getAttribute('data-points'));
    summary.connections_legend = await id('chart-connections').locator('.legend').textContent();
  });

  const queueRow = () => id(`row-queue-${queue}`).first();
  await step('queues list', async () => {
    await id('nav-queues').click();
    await queueRow().waitFor();
    const seen = await poll(() => cells(queueRow()), (c) => c && Number(c.messages) === expectedCount);
    summary.queue_row = seen.value;
    if (!seen.ok) mismatch('queues list', `${queue} shows ${seen.value?.messages} messages, expected ${expectedCount}`);
    // The search box keeps the row and hides the others; sorting keeps it too.
    await id('search-queues').fill(queue);
    summary.queue_search_count = await text('count-queues');
    await queueRow().waitFor();
    await page.locator('[data-testid="table-queues"] th[data-col="messages"]').click();
    await queueRow().waitFor();
    await id('search-queues').fill('');
  });

  if (skipMqtt) {
    summary.mqtt = 'skipped';
  } else {
    await step('mqtt clients', async () => {
      await id('nav-mqtt').click();
      await id('table-mqtt').waitFor();
      const row = id(`row-mqtt-${mqttClient}`).first();
      const listed = await poll(() => row.count(), (c) => c > 0);
      if (!listed.ok) {
        const ids = await page.locator('[data-testid="table-mqtt"] td[data-col="client_id"]').allTextContents();
        throw new Error(`client ${mqttClient} is not listed (listed: ${JSON.stringify(ids)})`);
      }
      summary.mqtt_row = await cells(row);
    });
  }

  await step('publish through the queue page', async () => {
    await id('nav-queues').click();
    await queueRow().getByTestId('queue-link').click();
    await id('queue-messages').waitFor();
    const start = await poll(() => text('queue-messages'), (v) => /^\d+$/.test(v));
    const n = Number(start.value);
    const payload = `dashboard test ${process.pid} ${Date.now()}`;
    await id('publish-payload').fill(payload);
    await id('publish-submit').click();
    const res = await poll(() => text('publish-result'), (v) => /routed/.test(v));
    summary.publish_result = res.value;
    if (!/: routed$/.test(res.value || '')) mismatch('publish', `publish result "${res.value}"`);
    const after = await poll(() => text('queue-messages'), (v) => Number(v) === n + 1);
    summary.queue_page = { before: n, after: Number(after.value) };
    if (!after.ok) mismatch('publish', `queue-messages went ${n} -> ${after.value}, expected ${n + 1}`);

    await id('peek-messages').click();
    const want = Math.min(5, n + 1);
    const peeked = await poll(() => id('peek-payload').allTextContents(), (v) => v && v.length === want);
    summary.peeked = peeked.value;
    if (!peeked.ok) mismatch('peek', `showed ${peeked.value?.length} messages, expected ${want}`);
    else if (n + 1 <= 5 && !peeked.value.includes(payload)) mismatch('peek', `the published payload is not among ${JSON.stringify(peeked.value)}`);
    const kept = await poll(() => text('queue-messages'), (v) => Number(v) === n + 1);
    if (!kept.ok) mismatch('peek', `queue-messages is ${kept.value} after a peek, expected ${n + 1}`);

    await id('nav-queues').click();
    const listed = await poll(() => cells(queueRow()), (c) => c && Number(c.messages) === n + 1);
    if (!listed.ok) mismatch('publish', `the Queues page shows ${listed.value?.messages}, expected ${n + 1}`);
  });

  if (!skipCreate) {
    await step('create and delete a queue', async () => {
      const name = `dashboard-created-${process.pid}`;
      await id('nav-queues').click();
      await id('create-queue-name').fill(name);
      await id('create-queue-submit').click();
      const row = id(`row-queue-${name}`);
      await row.waitFor();
      summary.created_queue = await cells(row);
      await row.getByTestId('queue-link').click();
      await id('delete-queue').click(); // confirm() is accepted
      await page.waitForURL(/#\/queues$/);
      await id('table-queues').waitFor();
      const gone = await poll(() => row.count(), (c) => c === 0);
      if (!gone.ok) mismatch('delete queue', `${name} is still listed`);
    });
  }

  if (amqpUrl) {
    await step('connections: find and close an AMQP connection', async () => {
      const { default: amqp } = await import('amqplib');
      const name = `dashboard-check-${process.pid}`;
      const conn = await amqp.connect(amqpUrl, { clientProperties: { connection_name: name } });
      let closedWith = null;
      conn.on('error', (e) => { closedWith = e.code ?? e.message; });
      const closed = new Promise((r) => conn.on('close', (e) => { closedWith ??= e?.code ?? 'closed'; r(); }));
      try {
        await id('nav-connections').click();
        await id('search-connections').fill(name);
        const row = page.locator('[data-testid^="row-connection-"]', { has: page.locator(`td[data-col="client_id"]:text-is("${name}")`) });
        await row.first().waitFor();
        summary.connection_row = await cells(row.first());
        if (!/^AMQP/.test(summary.connection_row.protocol)) mismatch('connections', `protocol "${summary.connection_row.protocol}"`);
        await row.first().getByTestId('close-connection').click();
        const done = await Promise.race([closed.then(() => true), sleep(T).then(() => false)]);
        summary.connection_closed_with = closedWith;
        if (!done) mismatch('connections', 'the AMQP client was not closed by the Close button');
        const gone = await poll(() => row.count(), (c) => c === 0);
        if (!gone.ok) mismatch('connections', 'the closed connection is still listed');
      } finally {
        conn.close().catch(() => {});
      }
    });
  }

  await step('logout', async () => {
    await id('logout').click();
    await id('login-username').waitFor({ state: 'visible' });
    const left = await page.evaluate(() => sessionStorage.length);
    if (left) mismatch('logout', 'sessionStorage still holds credentials');
  });
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exit(summary.mismatches.length ? 1 : 0);
