#!/usr/bin/env node
// Joins a user to a group through the real Keycloak admin console, as a
// (delegated) admin such as a community owner, and proves it in the UI.
//
//   node test/browser/join-group.mjs --keycloak http://localhost:8080 --realm REALM \
//     --username ownera --password ownera-pass --user bob \
//     --group-path /Communities/A/consumer --screenshot-dir DIR
//
// Flow (UI only, no admin REST calls of its own): console login → Users →
// search the user → open them → Groups tab → Join Group → search the group's
// name in the dialog → tick the row whose path is --group-path → Join → the
// Groups tab lists the path (checked again after Refresh).
//
// Idempotent: if the user is already a direct member, nothing is changed and
// the run succeeds ("already-member"); with --rejoin the user first leaves the
// group through the UI and is joined again.
//
// Exit codes: 0 success, 1 failure (message on stderr, failure-*.png and
// failure.html in the screenshot dir), 2 bad arguments.
// The last line on stdout is a JSON summary: {"result":"joined"|"already-member"|"rejoined",...}.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const USAGE = `usage: node join-group.mjs --keycloak URL --realm REALM --username ADMIN --password PASS
                         --user USERNAME --group-path /Parent/Child [--screenshot-dir DIR]
                         [--rejoin] [--step-timeout MS] [--timeout MS] [--chromium PATH]

  --keycloak        Keycloak base URL, e.g. http://localhost:8080
  --realm           realm whose admin console to use (/admin/REALM/console/)
  --username        admin console login (e.g. a community owner)
  --password        its password
  --user            username of the user to join to the group
  --group-path      full group path, e.g. /Communities/A/consumer
  --screenshot-dir  where screenshots go (default: ${path.join(HERE, 'screenshots')})
  --rejoin          if already a member, leave through the UI first, then join
  --step-timeout    ms for each UI wait (default 20000)
  --timeout         ms for the whole run (default 120000)
  --chromium        browser binary (default $CHROMIUM_PATH or /usr/bin/chromium)
`;

function usage(msg) {
  if (msg) process.stderr.write(`join-group: ${msg}\n`);
  process.stderr.write(USAGE);
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      keycloak: { type: 'string' },
      realm: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      user: { type: 'string' },
      'group-path': { type: 'string' },
      'screenshot-dir': { type: 'string' },
      rejoin: { type: 'boolean', default: false },
      'step-timeout': { type: 'string', default: '20000' },
      timeout: { type: 'string', default: '120000' },
      chromium: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  usage(err.message);
}
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
for (const k of ['keycloak', 'realm', 'username', 'password', 'user', 'group-path']) {
  if (!args[k]) usage(`--${k} is required`);
}
const keycloak = args.keycloak.replace(/\/+$/, '');
const groupPath = args['group-path'];
const segments = groupPath.split('/').slice(1);
if (!groupPath.startsWith('/') || segments.length === 0 || segments.some((s) => s === '')) {
  usage(`--group-path must look like /Parent/Child, got ${JSON.stringify(groupPath)}`);
}
const groupName = segments[segments.length - 1];
const stepTimeout = Number(args['step-timeout']);
const totalTimeout = Number(args.timeout);
if (!(stepTimeout > 0) || !(totalTimeout > 0)) usage('--step-timeout and --timeout must be positive numbers (ms)');
const screenshotDir = path.resolve(args['screenshot-dir'] || path.join(HERE, 'screenshots'));
const chromiumPath = args.chromium || process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const consoleUrl = `${keycloak}/admin/${encodeURIComponent(args.realm)}/console/`;

const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
const log = (msg) => process.stderr.write(`[join-group ${elapsed().padStart(5)}s] ${msg}\n`);

// playwright-core is imported lazily so that --help and argument errors work
// before `npm ci` has been run.
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  process.stderr.write(`join-group: cannot load playwright-core (run \`npm ci\` in ${HERE}): ${err.message}\n`);
  process.exit(1);
}

mkdirSync(screenshotDir, { recursive: true });

let browser;
let page;
let step = 'start';
let shot = 0;
const httpErrors = []; // admin API / console responses >= 400, for the failure report
const consoleErrors = [];

async function screenshot(name) {
  if (!page) return;
  shot += 1;
  const file = path.join(screenshotDir, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: 10_000 });
  log(`screenshot ${file}`);
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = undefined;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
}

let failing = false;
async function fail(message, err) {
  if (failing) return; // the overall timer and a step may race
  failing = true;
  process.stderr.write(`join-group: FAILED at step "${step}" after ${elapsed()}s: ${message}\n`);
  if (err && err.stack && process.env.JOIN_GROUP_DEBUG) process.stderr.write(`${err.stack}\n`);
  if (httpErrors.length) {
    process.stderr.write(`join-group: HTTP errors seen:\n${httpErrors.map((e) => `  ${e}`).join('\n')}\n`);
  }
  if (consoleErrors.length) {
    process.stderr.write(`join-group: browser console errors:\n${consoleErrors.slice(-10).map((e) => `  ${e}`).join('\n')}\n`);
  }
  if (page) {
    const safe = step.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    const png = path.join(screenshotDir, `failure-${safe}.png`);
    try {
      await page.screenshot({ path: png, fullPage: true, timeout: 10_000 });
      process.stderr.write(`join-group: failure screenshot ${png}\n`);
    } catch (e) {
      process.stderr.write(`join-group: could not take failure screenshot: ${e.message}\n`);
    }
    try {
      const html = await Promise.race([
        page.content(),
        new Promise((_, rej) => setTimeout(() => rej(new Error('timed out')), 5_000)),
      ]);
      writeFileSync(path.join(screenshotDir, 'failure.html'), html);
      process.stderr.write(`join-group: page URL ${page.url()}, HTML in ${path.join(screenshotDir, 'failure.html')}\n`);
    } catch (e) {
      process.stderr.write(`join-group: could not save page HTML: ${e.message}\n`);
    }
  }
  await closeBrowser();
  process.exit(1);
}

// Every wait below is bounded by stepTimeout; this bounds the whole run.
const overall = setTimeout(() => {
  fail(`the whole run took longer than --timeout ${totalTimeout} ms`);
}, totalTimeout);
overall.unref();

// A test runner that gives up sends SIGTERM (or SIGINT): record where we
// were, then close the browser (Playwright's own handlers are off, below).
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => fail(`interrupted by ${sig}`));
}

// Polls named conditions until one holds; returns its name. Bounded by `timeout`.
async function firstOf(conditions, timeout = stepTimeout) {
  const deadline = Date.now() + timeout;
  for (;;) {
    for (const [name, check] of Object.entries(conditions)) {
      if (await check().catch(() => false)) return name;
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 200));
  }
}
const visible = (locator) => () => locator.first().isVisible();
// A check that holds only once `check` has held continuously for `ms`: for
// states the console passes through while it is still loading.
function steady(check, ms = 1500) {
  let since;
  return async () => {
    if (!(await check().catch(() => false))) {
      since = undefined;
      return false;
    }
    since ??= Date.now();
    return Date.now() - since >= ms;
  };
}

// Waits for the toast of the last admin action; throws unless it is a success.
async function waitForAlert(what) {
  const alert = page.getByTestId('last-alert').last();
  await alert.waitFor({ state: 'visible' });
  const cls = (await alert.getAttribute('class')) || '';
  const text = (await alert.locator('.pf-v5-c-alert__title').innerText().catch(() => '')).trim()
    || (await alert.innerText()).trim();
  const kind = (cls.match(/pf-m-(success|danger|warning|info)/) || [])[1] || 'unknown';
  if (kind !== 'success') {
    throw new Error(`${what}: the console reported ${kind}: "${text}"`);
  }
  log(`console says: ${text}`);
  // Close it so that a later alert is not confused with this one.
  await alert.getByRole('button', { name: /close/i }).click({ timeout: 5_000 }).catch(() => {});
  await alert.waitFor({ state: 'hidden', timeout: 10_000 }).catch(() => {});
  return text;
}

// Types the group's name into the Groups tab's search box (or, if it is
// already there, clicks Refresh) and waits for the console to reload the
// user's groups from the server with that filter.
async function filterGroupsTab() {
  const tabSearch = page.getByTestId('table-search-input').getByRole('textbox');
  const reloaded = page.waitForResponse(
    (r) => /\/admin\/realms\/[^/]+\/users\/[^/]+\/groups\?/.test(r.url())
      && new URL(r.url()).searchParams.get('search') === groupName
      && r.request().method() === 'GET',
  );
  reloaded.catch(() => {}); // awaited below; do not let an early throw leave it unhandled
  const state = await firstOf({
    table: visible(tabSearch),
    empty: visible(page.getByTestId('no-groups-empty-action')),
  });
  if (state !== 'table') {
    throw new Error(`the Groups tab of ${args.user} shows ${state === 'empty' ? '"No groups"' : 'no membership table'}`
      + ' (note: Keycloak pages the user\'s groups before hiding those the admin may not view, so a user with'
      + ' many hidden groups can look group-less)');
  }
  if ((await tabSearch.inputValue()) === groupName) {
    await page.getByTestId('refresh').click();
  } else {
    await tabSearch.fill(groupName);
    await tabSearch.press('Enter');
  }
  const resp = await reloaded;
  if (resp.status() !== 200) throw new Error(`loading the user's groups gave HTTP ${resp.status()}`);
}

// The row of the user's Groups tab table whose Path cell is exactly groupPath.
function membershipRow() {
  return page
    .locator('table')
    .getByRole('row')
    .filter({ has: page.getByText(groupPath, { exact: true }) });
}

async function run() {
  step = 'launch browser';
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // chromium.launch always starts from a fresh, temporary user data dir that
    // Playwright deletes on close (a --user-data-dir arg is refused here).
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: stepTimeout,
    handleSIGTERM: false,
    handleSIGINT: false,
    handleSIGHUP: false,
  });
  const context = await browser.newContext({
    viewport: { width: 1400, height: 900 },
    locale: 'en-US', // the selectors below use the console's English texts
  });
  context.setDefaultTimeout(stepTimeout);
  context.setDefaultNavigationTimeout(stepTimeout);
  page = await context.newPage();
  page.on('response', (r) => {
    if (r.status() >= 400 && r.url().startsWith(keycloak)) {
      httpErrors.push(`${r.status()} ${r.request().method()} ${r.url().slice(keycloak.length)}`);
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  log(`chromium ${browser.version()} (${chromiumPath})`);

  // --- login ---------------------------------------------------------------
  step = 'open admin console';
  log(`open ${consoleUrl}`);
  await page.goto(consoleUrl, { waitUntil: 'domcontentloaded' });
  const username = page.locator('#username');
  const loginFirst = await firstOf({ form: visible(username), console: visible(page.getByTestId('nav-item-users')) });
  if (loginFirst !== 'form') {
    throw new Error(loginFirst ? 'the console opened without a login (not a fresh session?)' : `no login form at ${page.url()}`);
  }
  await screenshot('login');

  step = 'log in';
  log(`log in as ${args.username}`);
  await username.fill(args.username);
  await page.locator('#password').fill(args.password);
  await page.locator('#kc-login').click();
  const navUsers = page.getByTestId('nav-item-users');
  const afterLogin = await firstOf({
    console: visible(navUsers),
    loginError: visible(page.locator('#input-error, #input-error-username, #input-error-password, .kc-feedback-text, .pf-v5-c-alert.pf-m-danger, .alert-error')),
    requiredAction: async () => page.url().includes('/login-actions/required-action'),
    // Groups but no Users in the navigation: the account cannot query users.
    consoleWithoutUsers: async () => (await page.getByTestId('nav-item-groups').isVisible()) && !(await navUsers.isVisible()),
  });
  if (afterLogin === 'loginError') {
    const msg = (await page.locator('#input-error, #input-error-username, #input-error-password, .kc-feedback-text, .pf-v5-c-alert.pf-m-danger, .alert-error').first().innerText()).trim();
    throw new Error(`login refused: "${msg}"`);
  }
  if (afterLogin === 'requiredAction') {
    const title = (await page.locator('#kc-page-title').innerText().catch(() => '?')).trim();
    throw new Error(`login needs a required action first ("${title}"): give the account email, first and last name, emailVerified and a non-temporary password`);
  }
  if (afterLogin === 'consoleWithoutUsers') {
    throw new Error(`the console has no "Users" section for ${args.username} (needs query-users and view permission on users)`);
  }
  if (!afterLogin) throw new Error(`no "Users" section in the console after login (at ${page.url()})`);
  await screenshot('logged-in');

  // --- find the user -------------------------------------------------------
  step = 'open Users';
  await navUsers.click();
  const userSearch = page.getByTestId('table-search-input').getByRole('textbox');
  await userSearch.waitFor({ state: 'visible' });

  step = `search user ${args.user}`;
  log(`search user ${args.user}`);
  await userSearch.fill(args.user);
  await userSearch.press('Enter');
  const userLink = page.locator('table').getByRole('link', { name: args.user, exact: true });
  // The Users page shows "No search results" for a moment while its
  // search request still runs (seen under load): only a steady one counts.
  const found = await firstOf({
    link: visible(userLink),
    empty: steady(visible(page.getByText(/no search results/i))),
  });
  if (found !== 'link') {
    throw new Error(`user "${args.user}" not found in the Users list${found ? ' (no search results)' : ''}`);
  }
  await screenshot('user-search');

  step = `open user ${args.user}`;
  await userLink.first().click();
  await page.getByTestId('user-groups-tab').waitFor({ state: 'visible' });

  step = 'open Groups tab';
  log('open the Groups tab');
  await page.getByTestId('user-groups-tab').click();
  const joinButton = page.getByTestId('add-group-button').or(page.getByTestId('no-groups-empty-action'));
  await joinButton.first().waitFor({ state: 'visible' });
  // "No groups" (empty state, no search box) or the membership table.
  const tabSearch = page.getByTestId('table-search-input').getByRole('textbox');
  const tabState = await firstOf({
    empty: visible(page.getByTestId('no-groups-empty-action')),
    table: visible(tabSearch),
  });
  if (!tabState) throw new Error('the Groups tab shows neither a membership table nor "No groups"');
  let listed = 'not-member';
  if (tabState === 'table') {
    // Filter by the group's name so that a membership on a later page shows too.
    await filterGroupsTab();
    listed = (await firstOf({
      member: visible(membershipRow()),
      other: steady(async () => (await page.getByText(/no search results/i).first().isVisible())
        || (await page.locator('table tbody').getByRole('row').first().isVisible()), 1000),
    })) || 'unknown';
    if (listed === 'other') listed = 'not-member';
  }
  await screenshot('groups-before');

  let result = 'joined';
  if (listed === 'member') {
    if (!args.rejoin) {
      log(`${args.user} is already a direct member of ${groupPath}: nothing to do`);
      result = 'already-member';
    } else {
      step = `leave ${groupPath}`;
      log(`--rejoin: ${args.user} leaves ${groupPath} first`);
      await membershipRow().getByRole('button', { name: 'Leave', exact: true }).click();
      const confirm = page.getByRole('dialog').getByTestId('confirm');
      await confirm.click();
      await waitForAlert('leave group');
      await membershipRow().waitFor({ state: 'detached' });
      await screenshot('left');
      result = 'rejoined';
    }
  }

  if (result !== 'already-member') {
    // --- the join dialog ---------------------------------------------------
    step = 'open Join Group dialog';
    log('open the Join Group dialog');
    await joinButton.first().click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor({ state: 'visible' });
    const groupSearch = dialog.getByTestId('table-search-input').getByRole('textbox');
    await groupSearch.waitFor({ state: 'visible' });

    step = `find ${groupPath} in the dialog`;
    log(`search "${groupName}" in the dialog`);
    // The dialog shows "No search results" while its search request is still
    // in flight, so wait for the response before reading the list.
    const searched = page.waitForResponse(
      (r) => /\/admin\/realms\/[^/]+\/groups\/?\?/.test(r.url())
        && new URL(r.url()).searchParams.get('search') === groupName
        && r.request().method() === 'GET',
    );
    searched.catch(() => {});
    await groupSearch.fill(groupName);
    await groupSearch.press('Enter');
    const searchResp = await searched;
    if (searchResp.status() !== 200) throw new Error(`the dialog's group search gave HTTP ${searchResp.status()}`);
    // Search results show full paths; browsing shows bare names, so an exact
    // path match means the search has been applied.
    const row = dialog.getByRole('listitem').filter({ has: page.getByText(groupPath, { exact: true }) });
    const offered = await firstOf({
      row: visible(row),
      // The dialog fetches the user's groups after the search: "No search
      // results" may still flash before the rows render.
      none: steady(visible(dialog.getByText(/no search results/i))),
    });
    if (offered !== 'row') {
      throw new Error(`the Join Group dialog does not offer ${groupPath} (searched "${groupName}"${offered ? ': no search results' : ''}); ${args.username} may lack "view" on the group or its parents`);
    }
    await screenshot('join-dialog');

    step = `select ${groupPath}`;
    const check = row.first().getByRole('checkbox');
    if (await check.isDisabled()) {
      // The dialog disables groups the user already belongs to (e.g. listed on
      // another page of the Groups tab).
      log(`${groupPath} is disabled in the dialog: ${args.user} is already a member`);
      await dialog.getByRole('button', { name: 'Close' }).click();
      await dialog.waitFor({ state: 'hidden' });
      result = 'already-member';
    } else {
      await check.check();
      await screenshot('group-selected');

      step = 'join';
      log(`join ${args.user} to ${groupPath}`);
      const join = dialog.getByTestId('join-button');
      await join.click();
      await waitForAlert('join group');
      await dialog.waitFor({ state: 'hidden' });
    }
  }

  // --- verify in the UI ----------------------------------------------------
  step = 'verify membership in the Groups tab';
  // Reload the list from the server (not the console's own state).
  await filterGroupsTab();
  const shown = await firstOf({ member: visible(membershipRow()) });
  if (shown !== 'member') {
    throw new Error(`after reloading, the Groups tab of ${args.user} does not list ${groupPath}`);
  }
  await screenshot('groups-after');

  clearTimeout(overall);
  await closeBrowser();
  log(`ok: ${args.user} is a member of ${groupPath} (${result})`);
  process.stdout.write(`${JSON.stringify({
    result,
    user: args.user,
    groupPath,
    realm: args.realm,
    admin: args.username,
    seconds: Number(elapsed()),
    screenshotDir,
  })}\n`);
}

try {
  await run();
  process.exit(0);
} catch (err) {
  const msg = String(err && err.message ? err.message : err).replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => l.trim() && !l.includes('=====')).slice(0, 6).join('\n  ');
  await fail(msg, err);
}
