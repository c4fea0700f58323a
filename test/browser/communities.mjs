#!/usr/bin/env node
// Drives the Communities page of the admin console theme "communities"
// (deploy/admin-theme) in Debian's Chromium, as a person would: log in,
// click Communities in the bar on the left, and then one scenario.
//
//   node test/browser/communities.mjs --scenario SCENARIO --keycloak URL --realm REALM
//     --username U --password P [scenario options] --screenshot-dir DIR
//
// Scenarios:
//   create      --label L --name N [--caller-role R] [--dormant]
//               [--taken-label T --taken-name M]
//               fill in name and label, Save (clicked twice in one task of
//               the page: one create is sent), expect "Community created" and
//               the new community's page, with the caller's role R (default
//               owner; "none" for service desk, whose community is dormant:
//               --dormant expects the notice), then its row in the list;
//               with --taken-label, then try a label that exists and expect
//               an error alert carrying the service's problem detail
//   no-access   for a user Keycloak lets into the console whom the service
//               gives no Communities pages: expect the service asked, no
//               Communities entry in the bar, and the page's URL opened by
//               hand to explain, with no list and no form
//   add-member  --label L --user U --role R [--typed-label T] [--dormant]
//               open the community, find the user by name, add them as R,
//               expect them listed as R and the role picker back at its
//               default (consumer, as the community has an owner); with
//               --dormant, expect the notice and the picker at owner
//               first, and no notice after; with --typed-label, then open
//               it by a URL typed by hand with its label spelt T and expect
//               the page at L, drawn anew, with the caller's rights, listing
//               the new member
//   remove-member --label L --user U --role R [--and-self]
//               open the community, Remove U as R (the button named so),
//               cancel, Remove again and confirm with two clicks in one
//               task of the page (before React can disable the button):
//               expect one call, the alert, U gone; with --and-self, then
//               remove the caller as owner, expect the dialog to warn, and
//               the page to say the caller no longer manages it
//   delete      --label L: open the community, Delete, type the label,
//               confirm; expect "Community deleted" and the row gone
//
// --refuse-first-access answers the page's first access call with 401 in
// the browser (as for a token revoked under the page): the page must ask
// again with a fresh token (another one: retriedWithNewToken) and go on.
//
// Every scenario fails if the front door refused anything the console
// asked for.
//
// Exit 0 on success with a JSON summary as the last stdout line; 1 on
// failure with the step, a failure screenshot and the page's HTML; 2 on
// bad arguments. Every wait is bounded (--step-timeout, --timeout).

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = 'usage: node communities.mjs --scenario create|no-access|add-member|remove-member|delete --keycloak URL --realm REALM --username U --password P [--label L --name N --taken-label T --taken-name M --caller-role R --dormant --user U --role R --typed-label T --mine --and-self --show-more --refuse-first-access] [--screenshot-dir DIR] [--step-timeout MS] [--timeout MS] [--chromium PATH]\n';

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      scenario: { type: 'string' },
      keycloak: { type: 'string' },
      realm: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      label: { type: 'string' },
      name: { type: 'string' },
      'taken-label': { type: 'string' },
      'taken-name': { type: 'string' },
      user: { type: 'string' },
      'typed-label': { type: 'string' },
      mine: { type: 'boolean', default: false },
      dormant: { type: 'boolean', default: false },
      'and-self': { type: 'boolean', default: false },
      'show-more': { type: 'boolean', default: false },
      'refuse-first-access': { type: 'boolean', default: false },
      role: { type: 'string', default: 'consumer' },
      'caller-role': { type: 'string', default: 'owner' },
      'screenshot-dir': { type: 'string', default: 'screenshots' },
      'step-timeout': { type: 'string', default: '30000' },
      timeout: { type: 'string', default: '150000' },
      chromium: { type: 'string' },
    },
    strict: true,
  }));
} catch (err) {
  process.stderr.write(`communities: ${err.message}\n${USAGE}`);
  process.exit(2);
}
const need = { create: ['label', 'name'], 'no-access': [], 'add-member': ['label', 'user'], 'remove-member': ['label', 'user'], delete: ['label'] }[args.scenario];
if (!need) {
  process.stderr.write(`communities: unknown --scenario ${args.scenario}\n${USAGE}`);
  process.exit(2);
}
for (const k of ['keycloak', 'realm', 'username', 'password', ...need]) {
  if (!args[k]) {
    process.stderr.write(`communities: --${k} is required for ${args.scenario}\n${USAGE}`);
    process.exit(2);
  }
}

const keycloak = args.keycloak.replace(/\/+$/, '');
const consoleUrl = `${keycloak}/admin/${encodeURIComponent(args.realm)}/console/`;
const stepTimeout = Number(args['step-timeout']);
const shots = path.resolve(args['screenshot-dir']);
mkdirSync(shots, { recursive: true });
const started = Date.now();
const log = (m) => process.stderr.write(`[communities ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${m}\n`);

const { chromium } = await import('playwright-core');
let browser;
let page;
let step = 'start';
let shot = 0;
const serviceCalls = []; // the Communities page's calls to the service
const httpErrors = [];
let accessAnswered = 0; // access calls the service answered (not the ones refused here)
let refusedToken; // the token of the access call refused here
let retriedWithNewToken = false; // the next access call carried another token
const doorRefusals = []; // console requests the front door does not forward

async function screenshot(name) {
  shot += 1;
  const file = path.join(shots, `${String(shot).padStart(2, '0')}-${args.scenario}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
  log(`screenshot ${file}`);
}

async function fail(message) {
  process.stderr.write(`communities: FAILED at step "${step}": ${message}\n`);
  if (httpErrors.length) process.stderr.write(`communities: HTTP errors:\n  ${httpErrors.join('\n  ')}\n`);
  if (page) {
    try {
      await page.screenshot({ path: path.join(shots, `failure-${args.scenario}.png`), fullPage: true, timeout: 10_000 });
      writeFileSync(path.join(shots, `failure-${args.scenario}.html`), await page.content());
    } catch (e) {
      process.stderr.write(`communities: no failure screenshot: ${e.message}\n`);
    }
  }
  await Promise.race([browser?.close(), new Promise((r) => setTimeout(r, 10_000))]);
  process.exit(1);
}
setTimeout(() => fail(`the whole run took longer than ${args.timeout} ms`), Number(args.timeout)).unref();
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => fail(`interrupted by ${sig}`));

// The alert the console shows for the last action: {kind, title, text}.
async function lastAlert() {
  const alert = page.getByTestId('last-alert').first();
  await alert.waitFor({ state: 'visible' });
  const cls = (await alert.getAttribute('class')) || '';
  const kind = (cls.match(/pf-m-(success|danger|warning|info)/) || [])[1] || 'unknown';
  const text = (await alert.innerText()).trim();
  log(`alert (${kind}): ${text.replace(/\s+/g, ' ')}`);
  return { kind, text };
}

async function closeAlerts() {
  for (const b of await page.getByTestId('last-alert').getByRole('button', { name: /close/i }).all()) {
    await b.click({ timeout: 2_000 }).catch(() => {});
  }
  await page.getByTestId('last-alert').first().waitFor({ state: 'hidden', timeout: 10_000 }).catch(() => {});
}

async function login() {
  step = 'open the admin console';
  log(`open ${consoleUrl}`);
  await page.goto(consoleUrl, { waitUntil: 'domcontentloaded' });
  await page.locator('#username').waitFor({ state: 'visible' });
  await screenshot('login');
  step = 'log in';
  await page.locator('#username').fill(args.username);
  await page.locator('#password').fill(args.password);
  await page.locator('#kc-login').click();
  await page.waitForURL((u) => u.href.startsWith(consoleUrl), { timeout: stepTimeout });
}

// Waits for the console's left bar and for the service's answer about
// what the caller may do (the page asks it once).
async function consoleReady() {
  step = 'wait for the console';
  await page.getByTestId('currentRealm').waitFor({ state: 'visible' });
  const deadline = Date.now() + stepTimeout;
  while (accessAnswered === 0 && Date.now() < deadline) await page.waitForTimeout(100);
  if (!accessAnswered) throw new Error('the page did not ask the communities service what the caller may do');
}

async function openCommunities() {
  step = 'click Communities in the bar on the left';
  const nav = page.getByTestId('nav-item-communities');
  await nav.waitFor({ state: 'visible' });
  await screenshot('console');
  await nav.click();
  await page.getByTestId('communities-table').waitFor({ state: 'visible' });
  await screenshot('communities');
}

// findCommunity types label into the list's search, as an owner among
// thousands of communities does, and waits until the list is only what
// matches it (the label in another case, so the search ignores case).
async function findCommunity(label) {
  step = `search for ${label}`;
  // The rows are read only after the list answered this search: a list
  // that happened to show only matching rows before it proves nothing.
  const searched = page.waitForResponse((r) => /\/communities\?/.test(r.url()) && new URL(r.url()).searchParams.get('search') === label.toLowerCase());
  await page.getByTestId('communities-search').locator('input').fill(label.toLowerCase());
  await searched;
  const rows = page.getByTestId('communities-table').locator('tbody tr');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const texts = (await rows.allInnerTexts()).map((r) => r.toLowerCase());
    if (texts.length > 0 && texts.every((r) => r.includes(label.toLowerCase()))) break;
    if (Date.now() > deadline) throw new Error(`searching ${label} left rows ${JSON.stringify(texts)}`);
    await page.waitForTimeout(100);
  }
  await page.getByTestId(`community-row-${label}`).waitFor({ state: 'visible' });
  await screenshot(`search-${label}`);
}

// onlyMine turns on "Only communities I am in" and waits until every row
// listed names a role of the caller's.
async function onlyMine() {
  step = 'only communities I am in';
  // The switch's input is drawn over by its toggle: click the label, as a person does.
  await page.locator('label[for="communities-mine"]').click();
  if (!(await page.getByTestId('communities-mine').isChecked())) throw new Error('the switch did not turn on');
  const rows = page.getByTestId('communities-table').locator('tbody tr');
  const deadline = Date.now() + 15_000;
  for (;;) {
    const roles = await rows.locator('td[data-label="Your role"]').allInnerTexts();
    if (roles.length > 0 && roles.every((r) => r.trim() !== '—')) break;
    if (Date.now() > deadline) throw new Error(`only mine left rows with roles ${JSON.stringify(roles)}`);
    await page.waitForTimeout(100);
  }
  await screenshot('mine');
}

async function openCommunity(label) {
  await openCommunities();
  if (args.mine) await onlyMine();
  await findCommunity(label);
  step = `open community ${label}`;
  await page.getByTestId(`community-row-${label}`).getByRole('link', { name: label, exact: true }).click();
  await page.getByTestId('members-owner').or(page.getByTestId('community-not-managed')).first().waitFor({ state: 'visible' });
  await screenshot(`community-${label}`);
}

async function create() {
  await openCommunities();
  step = 'enter name and label';
  await page.getByTestId('communityName').fill(args.name);
  await page.getByTestId('securityLabel').fill(args.label);
  await screenshot('filled');
  step = 'Save (twice, in one go)';
  await doubleClick('save');
  const created = await lastAlert();
  if (created.kind !== 'success' || !created.text.includes('Community created')) {
    throw new Error(`after Save the console said (${created.kind}) "${created.text}", not "Community created"`);
  }
  step = "the new community's page";
  await page.waitForURL((u) => u.href.endsWith(`/communities/${encodeURIComponent(args.label)}`));
  const header = page.getByRole('heading', { name: `${args.label}: ${args.name}` });
  await header.waitFor({ state: 'visible' });
  // A creator owns what they made; service desk's community is dormant.
  const role = args['caller-role'];
  const pageText = (await page.locator('main, body').first().innerText()).replace(/\s+/g, ' ');
  if (!pageText.includes(`Your role: ${role}`)) throw new Error(`the page of ${args.label} does not say "Your role: ${role}": ${pageText.slice(0, 500)}`);
  // The notice is drawn with the member lists.
  await page.getByTestId('members-owner').waitFor({ state: 'visible' });
  const dormant = await page.getByTestId('community-dormant').isVisible();
  if (dormant !== args.dormant) throw new Error(`the dormant notice is ${dormant ? 'shown' : 'not shown'}`);
  await screenshot('created');
  const posts = serviceCalls.filter((c) => c.startsWith('POST ') && /\/communities$/.test(c)).length;
  if (posts !== 1) throw new Error(`Save clicked twice in one go sent ${posts} creates`);
  step = 'the community is listed';
  await openCommunities();
  await findCommunity(args.label);
  const rowText = (await page.getByTestId(`community-row-${args.label}`).innerText()).replace(/\s+/g, ' ');
  if (!rowText.includes(args.name)) throw new Error(`the row of ${args.label} reads "${rowText}": not its name`);
  const out = { created: args.label, alert: created.text, row: rowText };
  if (args['taken-label']) {
    await closeAlerts();
    step = `try the taken label ${args['taken-label']}`;
    await page.getByTestId('communities-search').locator('input').fill('');
    await page.getByTestId('communityName').fill(args['taken-name'] || `${args.name} again`);
    await page.getByTestId('securityLabel').fill(args['taken-label']);
    await page.getByTestId('save').click();
    const refused = await lastAlert();
    if (refused.kind !== 'danger') {
      throw new Error(`a taken label gave a ${refused.kind} alert: "${refused.text}"`);
    }
    await screenshot('taken-label-refused');
    out.takenAlert = refused.text;
  }
  return out;
}

async function noAccess() {
  await consoleReady();
  await screenshot('console');
  // The bar is drawn from the service's answer, which has come.
  await page.waitForTimeout(500);
  const entry = await page.getByTestId('nav-item-communities').count();
  step = 'open the Communities page by its URL';
  const url = `${consoleUrl}#/${encodeURIComponent(args.realm)}/communities`;
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.getByTestId('communities-no-access').waitFor({ state: 'visible' });
  await screenshot('typed-url');
  const table = await page.getByTestId('communities-table').count();
  const form = await page.getByTestId('create-community-form').count();
  const inputs = await page.getByTestId('communityName').count() + await page.getByTestId('securityLabel').count();
  const explained = await page.getByTestId('communities-no-access').count();
  const listCalls = serviceCalls.filter((c) => /\/communities(\?|$)/.test(c));
  return { navEntry: entry, table, form, inputs, explained, listCalls, bodyText: (await page.locator('body').innerText()).slice(0, 2000) };
}

// Opens the community by a URL typed by hand, its label spelt typed (labels
// match ignoring case): the page must come to the label as it is, with
// the caller's rights, not "not managed".
async function openTypedCommunity(typed) {
  step = `open community ${typed} by its URL`;
  // What is on screen now is marked, so that only a page drawn anew passes.
  await page.evaluate(() => document.querySelectorAll('[data-testid="members-owner"], [data-testid="community-not-managed"]').forEach((e) => e.setAttribute('data-stale', '')));
  await page.goto(`${consoleUrl}#/${encodeURIComponent(args.realm)}/communities/${encodeURIComponent(typed)}`, { waitUntil: 'domcontentloaded' });
  await page.locator('[data-testid="members-owner"]:not([data-stale]), [data-testid="community-not-managed"]:not([data-stale])').first().waitFor({ state: 'visible' });
  await screenshot(`community-typed-${typed}`);
  if (await page.getByTestId('community-not-managed').count()) throw new Error(`opened as ${typed}, the page says the caller does not manage ${args.label}`);
  if (!page.url().endsWith(`/communities/${encodeURIComponent(args.label)}`)) throw new Error(`opened as ${typed}, the page is at ${page.url()}`);
}

async function roleChosen() {
  return page.getByTestId('member-role').inputValue();
}

async function addMember() {
  await openCommunity(args.label);
  step = 'the dormant notice and the role offered first';
  const dormant = await page.getByTestId('community-dormant').isVisible();
  if (dormant !== args.dormant) throw new Error(`the dormant notice is ${dormant ? 'shown' : 'not shown'}`);
  const offered = await roleChosen();
  if (offered !== (args.dormant ? 'owner' : 'consumer')) throw new Error(`the role picker starts at ${offered}`);
  step = `find ${args.user}`;
  await page.getByTestId('member-search').fill(args.user);
  await page.getByTestId('member-search-button').click();
  await page.getByTestId(`pick-${args.user}`).check();
  await page.getByTestId('member-role').selectOption(args.role);
  await screenshot('member-picked');
  step = 'Add';
  await page.getByTestId('add-member').click();
  const added = await lastAlert();
  if (added.kind !== 'success') throw new Error(`adding the member: (${added.kind}) "${added.text}"`);
  step = `${args.user} listed as ${args.role}`;
  await page.getByTestId(`member-${args.role}-${args.user}`).waitFor({ state: 'visible' });
  await screenshot('member-added');
  step = 'the role picker back at its default';
  // The community has an owner now (the caller, or the one just added).
  const deadline = Date.now() + 10_000;
  while ((await roleChosen()) !== 'consumer' && Date.now() < deadline) await page.waitForTimeout(100);
  if ((await roleChosen()) !== 'consumer') throw new Error(`after adding, the role picker is at ${await roleChosen()}`);
  if (args.dormant) await page.getByTestId('community-dormant').waitFor({ state: 'hidden' });
  if (args['typed-label']) {
    await openTypedCommunity(args['typed-label']);
    await page.getByTestId(`member-${args.role}-${args.user}`).waitFor({ state: 'visible' });
  }
  return { added: args.user, role: args.role, alert: added.text };
}

// doubleClick clicks the element twice in one task of the page, before
// React can draw it disabled: only the page's own guard stops the second.
async function doubleClick(testId) {
  await page.getByTestId(testId).waitFor({ state: 'visible' });
  await page.evaluate((id) => {
    const b = document.querySelector(`[data-testid="${id}"]`);
    b.click();
    b.click();
  }, testId);
}

const roleNames = { owner: 'owner', author: 'author', consumer: 'consumer' };

// removeOne removes user as role through the confirmation dialog: the
// button is found by its accessible name, a first Cancel removes nothing,
// and a double click on the dialog's Remove sends one call.
async function removeOne(user, role, self) {
  step = `Remove ${user} as ${role}`;
  const button = page.getByRole('button', { name: `Remove ${user} as ${roleNames[role]}`, exact: true });
  const calls = () => serviceCalls.filter((c) => c.startsWith('DELETE ') && c.includes(`/${role}/`)).length;
  const before = calls();
  await button.click();
  const dialog = page.getByTestId('remove-member-dialog');
  await dialog.waitFor({ state: 'visible' });
  // The dialog as a whole, its title included (the test id is on its body).
  const text = (await page.getByRole('dialog').innerText()).replace(/\s+/g, ' ');
  if (!text.includes(`Remove ${user} as ${roleNames[role]}?`)) throw new Error(`the dialog reads "${text}"`);
  const warned = await page.getByTestId('remove-self-owner').isVisible();
  if (warned !== self) throw new Error(`the dialog ${warned ? 'warns' : 'does not warn'} of removing oneself as owner: "${text}"`);
  await screenshot(`remove-${user}-dialog`);
  await page.getByTestId('cancel-remove').click();
  await dialog.waitFor({ state: 'hidden' });
  await page.waitForTimeout(300);
  if (calls() !== before) throw new Error('Cancel removed the member');
  await page.getByTestId(`member-${role}-${user}`).waitFor({ state: 'visible' });
  await button.click();
  await dialog.waitFor({ state: 'visible' });
  await doubleClick('confirm-remove');
  const removed = await lastAlert();
  if (removed.kind !== 'success') throw new Error(`removing ${user}: (${removed.kind}) "${removed.text}"`);
  await page.getByTestId(`member-${role}-${user}`).waitFor({ state: 'detached' }).catch(async (e) => {
    if (!self) throw e;
  });
  await page.waitForTimeout(300);
  if (calls() !== before + 1) throw new Error(`removing ${user} sent ${calls() - before} calls`);
  await screenshot(`removed-${user}`);
  return removed.text;
}

// showMore asks for the next page of role's members until user is shown:
// they were not on the first.
async function showMore(user, role) {
  step = `Show more ${role}s until ${user} is shown`;
  const row = page.getByTestId(`member-${role}-${user}`);
  if (await row.count()) throw new Error(`${user} is on the first page of ${role}s`);
  const shown = () => page.locator(`[data-testid^="member-${role}-"]`).count();
  if ((await shown()) !== 50) throw new Error(`the first page shows ${await shown()} ${role}s, want 50`);
  for (let pages = 1; !(await row.count()); pages++) {
    if (pages > 20) throw new Error(`${user} is not among the first ${await shown()} ${role}s`);
    const before = await shown();
    await page.getByTestId(`more-${role}`).click();
    await page.waitForFunction(
      ([prefix, n]) => document.querySelectorAll(`[data-testid^="${prefix}"]`).length > n,
      [`member-${role}-`, before],
    );
  }
  await screenshot(`more-${role}`);
}

async function removeMember() {
  await openCommunity(args.label);
  if (args['show-more']) await showMore(args.user, args.role);
  const out = { removed: args.user, role: args.role, alert: await removeOne(args.user, args.role, false) };
  if (args['and-self']) {
    await closeAlerts();
    out.selfAlert = await removeOne(args.username, 'owner', true);
    step = 'the page says the caller no longer manages it';
    await page.getByTestId('community-not-managed').waitFor({ state: 'visible' });
    if (await page.getByTestId('members-owner').count()) throw new Error('the member lists are still shown');
  }
  return out;
}

async function remove() {
  await openCommunity(args.label);
  step = 'Delete community';
  await page.getByTestId('delete-community').click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor({ state: 'visible' });
  const warning = (await dialog.innerText()).replace(/\s+/g, ' ');
  if (!warning.includes('will not delete the corresponding security labels')) {
    throw new Error(`the dialog lacks seed 000's warning: "${warning}"`);
  }
  if (await page.getByTestId('confirm-delete').isEnabled()) throw new Error('Delete is enabled before the label is typed');
  await page.getByTestId('confirm-label').fill(args.label);
  await screenshot('delete-confirm');
  await page.getByTestId('confirm-delete').click();
  const deleted = await lastAlert();
  if (deleted.kind !== 'success' || !deleted.text.includes('Community deleted')) {
    throw new Error(`after Delete: (${deleted.kind}) "${deleted.text}"`);
  }
  step = 'the community is no longer listed';
  await page.getByTestId('communities-table').waitFor({ state: 'visible' });
  await page.getByTestId(`community-row-${args.label}`).waitFor({ state: 'detached' });
  await screenshot('deleted');
  return { deleted: args.label, alert: deleted.text };
}

try {
  step = 'launch Chromium';
  browser = await chromium.launch({
    executablePath: args.chromium || process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: stepTimeout,
    handleSIGTERM: false,
    handleSIGINT: false,
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, locale: 'en-US' });
  context.setDefaultTimeout(stepTimeout);
  page = await context.newPage();
  page.on('request', (r) => {
    if (/\/realms\/[^/]+\/communities/.test(r.url())) serviceCalls.push(`${r.method()} ${r.url().slice(keycloak.length)}`);
  });
  if (args['refuse-first-access']) {
    let refused = false;
    await page.route('**/communities-authz/access', async (route) => {
      const token = route.request().headers().authorization;
      if (refused) {
        // A retry with the token refused would prove nothing.
        if (token && token !== refusedToken) retriedWithNewToken = true;
        return route.continue();
      }
      refused = true;
      refusedToken = token;
      log('answering the first access call with 401');
      await route.fulfill({ status: 401, contentType: 'application/problem+json', body: JSON.stringify({ title: 'Unauthorized', status: 401, detail: 'token refused (by the test)' }) });
    });
  }
  page.on('response', (r) => {
    if (r.url().includes('/communities-authz/access') && r.status() === 200) accessAnswered += 1;
    // The console must need nothing the front door keeps back.
    if (r.status() === 404) {
      r.text().then((body) => body.includes('the front door forwards only') && doorRefusals.push(`${r.request().method()} ${r.url()}`)).catch(() => {});
    }
    if (r.status() >= 400) httpErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  await login();
  let result;
  if (args.scenario === 'no-access') {
    result = await noAccess();
  } else {
    await consoleReady();
    result = await { create, 'add-member': addMember, 'remove-member': removeMember, delete: remove }[args.scenario]();
  }
  await page.waitForTimeout(200);
  if (doorRefusals.length) throw new Error(`the front door refused what the console asked for: ${doorRefusals.join(', ')}`);
  await browser.close();
  log('ok');
  process.stdout.write(`${JSON.stringify({ scenario: args.scenario, user: args.username, ...result, serviceCalls, accessAnswered, retriedWithNewToken, seconds: (Date.now() - started) / 1000 })}\n`);
  process.exit(0);
} catch (err) {
  await fail(String(err?.message ?? err).split('\n').slice(0, 6).join('\n  '));
}
