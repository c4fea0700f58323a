import type UserRepresentation from "@keycloak/keycloak-admin-client/lib/defs/userRepresentation";
import { useAdminClient, useRealm, useWhoAmI, ViewHeader } from "@keycloak/keycloak-admin-ui";
import {
  ActionGroup,
  Alert,
  AlertVariant,
  Button,
  Label,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
  FormSelect,
  FormSelectOption,
  List,
  ListItem,
  Modal,
  ModalVariant,
  PageSection,
  Radio,
  TextInput,
  Title,
} from "@patternfly/react-core";
import { useCallback, useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import { useNavigate, useParams } from "react-router-dom";
import { useAlerts } from "../alerts";
import { useOneAtATime } from "../oneAtATime";
import { mayChangeMembers, mayDelete, mayManage, useCommunitiesAccess } from "../access";
import { toCommunities, toCommunity } from "../routes";
import type { Access, Community, Member, Members } from "../service";
import { ServiceError } from "../service";
import { rolesText, WithAccess } from "./common";

const ROLES = ["owner", "author", "consumer"] as const;

const detailOf = (e: unknown) => (e instanceof ServiceError ? e.detail : String(e));

/** Users one search shows; one more is asked for, to tell that there are more. */
const SEARCH_MAX = 20;

/**
 * Members of each role one page shows; Show more asks for as many again.
 * One more is asked for, to tell that there are more.
 */
const MEMBERS_PAGE = 50;

/** Roles whose list goes on past what is shown. */
type More = Record<string, boolean>;

/** The member lists shown, and which go on. */
type Lists = { members: Members; more: More };

/**
 * A disabled owner cannot manage the community: it does not count. Owners
 * not yet shown may be enabled, so a full page of owners is not dormant.
 */
const hasEnabledOwner = (members: Members, more: More) =>
  more.owner || (members.owner ?? []).some((m: Member) => m.enabled);

/** Finds a user as the Users page does (Keycloak's admin API, the console's token). */
const AddMember = ({ label, defaultRole, onAdded }: { label: string; defaultRole: string; onAdded: () => void }) => {
  const { t } = useTranslation();
  const { adminClient } = useAdminClient();
  const { client } = useCommunitiesAccess();
  const { addAlert } = useAlerts();
  const [search, setSearch] = useState("");
  const [found, setFound] = useState<UserRepresentation[]>();
  const [picked, setPicked] = useState<UserRepresentation>();
  const [role, setRole] = useState(defaultRole);
  const [busy, oneAtATime] = useOneAtATime();
  // Only the newest search answers: a slow one must not replace a later one.
  const searches = useRef(0);

  // The default follows the community (owner while it has none, consumer
  // once it has) until the user chooses: a reload after another change
  // must not swap a role chosen for the user picked.
  const chosen = useRef(false);
  useEffect(() => {
    if (!chosen.current) setRole(defaultRole);
  }, [defaultRole]);

  const find = async () => {
    const mine = ++searches.current;
    setPicked(undefined);
    try {
      const users = await adminClient.users.find({ search, first: 0, max: SEARCH_MAX + 1, briefRepresentation: true });
      if (mine === searches.current) setFound(users);
    } catch (e) {
      if (mine !== searches.current) return;
      setFound([]);
      addAlert(t("userSearchFailed"), AlertVariant.danger, String(e));
    }
  };

  const add = () =>
    oneAtATime(async () => {
      if (!picked?.id) return;
      try {
        await client.addMember(label, role, picked.id);
        addAlert(t("memberAdded", { user: picked.username, role }), AlertVariant.success);
        setPicked(undefined);
        setFound(undefined);
        setSearch("");
        // The next member starts from the default again.
        chosen.current = false;
        setRole(defaultRole);
        onAdded();
      } catch (e) {
        addAlert(t("memberNotAdded"), AlertVariant.danger, detailOf(e));
      }
    });

  return (
    <Form
      data-testid="add-member-form"
      onSubmit={(e) => {
        e.preventDefault();
        void find();
      }}
    >
      <Title headingLevel="h2">{t("addMember")}</Title>
      <FormGroup label={t("searchUser")} fieldId="member-search">
        <TextInput
          id="member-search"
          data-testid="member-search"
          value={search}
          placeholder={t("searchUserPlaceholder")}
          onChange={(_e, v) => setSearch(v)}
        />
      </FormGroup>
      <ActionGroup>
        <Button type="submit" variant="secondary" data-testid="member-search-button">
          {t("search")}
        </Button>
      </ActionGroup>
      {found && found.length === 0 && <div data-testid="member-search-empty">{t("noSearchResults")}</div>}
      {found && found.length > 0 && (
        <FormGroup
          role="radiogroup"
          label={t("users")}
          fieldId="member-pick"
          isStack
          aria-describedby={found.length > SEARCH_MAX ? "member-search-more" : undefined}
        >
          {found.slice(0, SEARCH_MAX).map((u) => (
            <Radio
              key={u.id}
              id={`pick-${u.id}`}
              name="member-pick"
              data-testid={`pick-${u.username}`}
              label={`${u.username}${u.firstName || u.lastName ? ` (${[u.firstName, u.lastName].filter(Boolean).join(" ")})` : ""}`}
              isChecked={picked?.id === u.id}
              onChange={() => setPicked(u)}
            />
          ))}
          {found.length > SEARCH_MAX && (
            <FormHelperText>
              <HelperText>
                <HelperTextItem id="member-search-more" data-testid="member-search-more">{t("moreSearchResults", { max: SEARCH_MAX })}</HelperTextItem>
              </HelperText>
            </FormHelperText>
          )}
        </FormGroup>
      )}
      <FormGroup label={t("communityRole")} fieldId="member-role">
        <FormSelect
          id="member-role"
          data-testid="member-role"
          value={role}
          onChange={(_e, v) => {
            chosen.current = true;
            setRole(v);
          }}
        >
          {ROLES.map((r) => (
            <FormSelectOption key={r} value={r} label={t(`communityRole.${r}`)} />
          ))}
        </FormSelect>
      </FormGroup>
      <ActionGroup>
        <Button data-testid="add-member" isDisabled={!picked || busy} isLoading={busy} onClick={() => void add()}>
          {t("add")}
        </Button>
      </ActionGroup>
    </Form>
  );
};

const MemberLists = ({
  label,
  members,
  more,
  canChange,
  onChanged,
  onMore,
}: {
  label: string;
  members: Members;
  more: More;
  canChange: boolean;
  onChanged: () => void;
  onMore: (role: string) => Promise<void>;
}) => {
  const { t } = useTranslation();
  const { client, update } = useCommunitiesAccess();
  const { addAlert } = useAlerts();
  const { whoAmI } = useWhoAmI();

  // The member whose removal waits for confirmation.
  const [pending, setPending] = useState<{ role: string; id: string; username: string }>();
  const [busy, oneAtATime] = useOneAtATime();
  const self = pending?.id === whoAmI.userId;

  const remove = () =>
    oneAtATime(async () => {
      if (!pending) return;
      const { role, id, username } = pending;
      try {
        await client.removeMember(label, role, id);
        addAlert(t("memberRemoved", { user: username, role }), AlertVariant.success);
        if (id === whoAmI.userId) {
          update((a) => ({
            ...a,
            owned: role === "owner" ? a.owned.filter((l) => l !== label) : a.owned,
            memberships: { ...a.memberships, [label]: (a.memberships[label] ?? []).filter((r) => r !== role) },
          }));
        }
        onChanged();
      } catch (e) {
        addAlert(t("memberNotRemoved"), AlertVariant.danger, detailOf(e));
      } finally {
        setPending(undefined);
      }
    });

  return (
    <>
      {ROLES.map((role) => (
        <section key={role} data-testid={`members-${role}`} className="pf-v5-u-mb-md">
          <Title headingLevel="h3">{t(`communityMembers.${role}`)}</Title>
          {(members[role] ?? []).length === 0 ? (
            <div className="pf-v5-u-color-200">{t("noMembers")}</div>
          ) : (
            <List isPlain>
              {(members[role] ?? []).map((m) => (
                <ListItem key={m.id} data-testid={`member-${role}-${m.username}`}>
                  {m.username}{" "}
                  {!m.enabled && (
                    <Label isCompact data-testid={`disabled-${role}-${m.username}`}>
                      {t("memberDisabled")}
                    </Label>
                  )}{" "}
                  {canChange && (
                    <Button
                      variant="link"
                      isInline
                      data-testid={`remove-${role}-${m.username}`}
                      aria-label={t("removeMemberNamed", { user: m.username, role: t(`communityRoleName.${role}`) })}
                      onClick={() => setPending({ role, id: m.id, username: m.username })}
                    >
                      {t("remove")}
                    </Button>
                  )}
                </ListItem>
              ))}
            </List>
          )}
          {more[role] && (
            <Button
              variant="link"
              isInline
              isDisabled={busy}
              data-testid={`more-${role}`}
              onClick={() => void oneAtATime(() => onMore(role))}
            >
              {t("showMoreMembers")}
            </Button>
          )}
        </section>
      ))}
      <Modal
        variant={ModalVariant.small}
        title={t("removeMemberTitle", {
          user: pending?.username ?? "",
          role: pending ? t(`communityRoleName.${pending.role}`) : "",
        })}
        titleIconVariant={self ? "warning" : undefined}
        isOpen={!!pending}
        onClose={() => !busy && setPending(undefined)}
        data-testid="remove-member-dialog"
        actions={[
          <Button
            key="confirm"
            variant="danger"
            data-testid="confirm-remove"
            isDisabled={busy}
            isLoading={busy}
            onClick={() => void remove()}
          >
            {t("remove")}
          </Button>,
          <Button key="cancel" variant="link" data-testid="cancel-remove" isDisabled={busy} onClick={() => setPending(undefined)}>
            {t("cancel")}
          </Button>,
        ]}
      >
        <p>{t("removeMemberText", { user: pending?.username ?? "", label })}</p>
        {self && pending?.role === "owner" && (
          <Alert
            variant="warning"
            isInline
            isPlain
            className="pf-v5-u-mt-md"
            title={t("removeSelfOwner")}
            data-testid="remove-self-owner"
          />
        )}
      </Modal>
    </>
  );
};

/** Service desk, or a creator who owns it: confirm by typing the label. */
const DeleteCommunity = ({ community, onDeleted }: { community: Community; onDeleted: () => void }) => {
  const { t } = useTranslation();
  const { client } = useCommunitiesAccess();
  const { addAlert } = useAlerts();
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState("");
  const [busy, oneAtATime] = useOneAtATime();

  const remove = () =>
    oneAtATime(async () => {
      try {
        await client.remove(community);
        addAlert(t("communityDeleted"), AlertVariant.success);
        setOpen(false);
        onDeleted();
      } catch (e) {
        addAlert(t("communityNotDeleted"), AlertVariant.danger, detailOf(e));
      }
    });

  return (
    <>
      <Button variant="danger" data-testid="delete-community" onClick={() => (setTyped(""), setOpen(true))}>
        {t("deleteCommunity")}
      </Button>
      <Modal
        variant={ModalVariant.medium}
        title={t("deleteCommunityTitle", { label: community.securityLabel })}
        titleIconVariant="warning"
        isOpen={open}
        onClose={() => setOpen(false)}
        data-testid="delete-community-dialog"
        actions={[
          <Button
            key="confirm"
            variant="danger"
            data-testid="confirm-delete"
            isDisabled={typed !== community.securityLabel || busy}
            isLoading={busy}
            onClick={() => void remove()}
          >
            {t("delete")}
          </Button>,
          <Button key="cancel" variant="link" onClick={() => setOpen(false)}>
            {t("cancel")}
          </Button>,
        ]}
      >
        <Alert variant="warning" isInline isPlain title={t("deleteCommunityWarningTitle")}>
          <p>{t("deleteCommunityWarning")}</p>
        </Alert>
        <p className="pf-v5-u-mt-md">{t("deleteCommunityDeletes")}</p>
        <FormGroup label={t("deleteCommunityConfirm", { label: community.securityLabel })} fieldId="confirm-label" className="pf-v5-u-mt-md">
          <TextInput id="confirm-label" data-testid="confirm-label" value={typed} onChange={(_e, v) => setTyped(v)} />
        </FormGroup>
      </Modal>
    </>
  );
};

const Details = ({ access, label }: { access: Access; label: string }) => {
  const { t } = useTranslation();
  const { realm } = useRealm();
  const navigate = useNavigate();
  const { client, update } = useCommunitiesAccess();
  const { addAlert } = useAlerts();
  const [community, setCommunity] = useState<Community>();
  const [lists, setLists] = useState<Lists>();
  const [error, setError] = useState<string>();
  const manage = mayManage(access, label);
  // Only the newest load shows: one started before a change of access
  // (an owner removing themselves) must not answer for the page after it.
  const loads = useRef(0);
  // Once the page is drawn, a reload that fails (after a change) says so
  // in an alert and leaves the page, Delete included, as it was.
  const shown = useRef(false);

  const load = useCallback(async () => {
    const mine = ++loads.current;
    try {
      const c = await client.get(label);
      if (mine !== loads.current) return;
      if (c.securityLabel !== label) {
        // Labels match ignoring case; access names them as they are.
        navigate(toCommunity(realm, c.securityLabel), { replace: true });
        return;
      }
      setCommunity(c);
      const m = manage ? await client.members(label, { max: MEMBERS_PAGE + 1 }) : undefined;
      if (mine !== loads.current) return;
      setLists(
        m && {
          members: Object.fromEntries(ROLES.map((r) => [r, (m[r] ?? []).slice(0, MEMBERS_PAGE)])),
          more: Object.fromEntries(ROLES.map((r) => [r, (m[r] ?? []).length > MEMBERS_PAGE])),
        },
      );
      setError(undefined);
      shown.current = true;
    } catch (e) {
      if (mine !== loads.current) return;
      if (shown.current) addAlert(t("communityNotReloaded"), AlertVariant.danger, detailOf(e));
      else setError(detailOf(e));
    }
  }, [client, label, manage, navigate, realm, addAlert, t]);

  useEffect(() => {
    void load();
  }, [load]);

  // The next page of one role's members, after those shown. It is added
  // only to the list it was asked for: a load (after a change) under way
  // or begun meanwhile puts back the first pages instead. One that shifted
  // the list (a member added or removed elsewhere) shows no one twice.
  const showMore = async (role: string) => {
    if (!lists) return;
    const mine = loads.current;
    const first = lists.members[role]?.length ?? 0;
    try {
      const got = (await client.members(label, { role, first, max: MEMBERS_PAGE + 1 }))[role] ?? [];
      if (mine !== loads.current) return;
      setLists((l) => {
        if (!l || (l.members[role]?.length ?? 0) !== first) return l;
        const seen = new Set(l.members[role].map((m) => m.id));
        const next = got.slice(0, MEMBERS_PAGE).filter((m) => !seen.has(m.id));
        return {
          members: { ...l.members, [role]: [...l.members[role], ...next] },
          more: { ...l.more, [role]: got.length > MEMBERS_PAGE },
        };
      });
    } catch (e) {
      if (mine !== loads.current) return;
      addAlert(t("membersNotListed"), AlertVariant.danger, detailOf(e));
    }
  };
  // What a change reloads with: the newest load, whatever access it saw.
  const latest = useRef(load);
  latest.current = load;
  const reload = () => void latest.current();

  if (error) {
    return (
      <PageSection>
        <Alert variant="danger" isInline title={t("communityUnavailable")} data-testid="community-error">
          {error}
        </Alert>
      </PageSection>
    );
  }
  if (!community) return null;
  return (
    <>
      <ViewHeader
        titleKey={`${community.securityLabel}: ${community.communityName}`}
        noTranslate
        subKey={t("yourRoleIs", { roles: rolesText(access, label, t("noRole")) })}
      />
      <PageSection variant="light">
        {!manage && <div data-testid="community-not-managed">{t("communityNotManaged")}</div>}
        {manage && lists && (
          <>
            {!hasEnabledOwner(lists.members, lists.more) && (
              <Alert
                variant="info"
                isInline
                title={t("communityDormant")}
                className="pf-v5-u-mb-md"
                data-testid="community-dormant"
              />
            )}
            <MemberLists
              label={label}
              members={lists.members}
              more={lists.more}
              canChange={mayChangeMembers(access, label)}
              onChanged={reload}
              onMore={showMore}
            />
            {mayChangeMembers(access, label) && (
              <AddMember
                label={label}
                defaultRole={hasEnabledOwner(lists.members, lists.more) ? "consumer" : "owner"}
                onAdded={reload}
              />
            )}
          </>
        )}
      </PageSection>
      {mayDelete(access, label) && (
        <PageSection variant="light">
          <DeleteCommunity
            community={community}
            onDeleted={() => {
              update((a) => {
                const memberships = { ...a.memberships };
                delete memberships[label];
                return { ...a, owned: a.owned.filter((l) => l !== label), memberships };
              });
              navigate(toCommunities(realm));
            }}
          />
        </PageSection>
      )}
    </>
  );
};

export default function CommunityDetails() {
  const { label = "" } = useParams();
  // Keyed by label: another community's page starts empty, never showing
  // the last one's members while its own load.
  return <WithAccess>{(access) => <Details key={label} access={access} label={label} />}</WithAccess>;
}
