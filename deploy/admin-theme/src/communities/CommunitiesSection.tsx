import { useRealm, ViewHeader } from "@keycloak/keycloak-admin-ui";
import {
  ActionGroup,
  AlertVariant,
  Button,
  Form,
  FormGroup,
  FormHelperText,
  HelperText,
  HelperTextItem,
  PageSection,
  Pagination,
  SearchInput,
  Switch,
  TextInput,
  Title,
  Toolbar,
  ToolbarContent,
  ToolbarItem,
} from "@patternfly/react-core";
import { Table, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table";
import { useEffect, useState } from "react";
import { useTranslation } from "react-i18next";
import { Link, useNavigate } from "react-router-dom";
import { useAlerts } from "../alerts";
import { useOneAtATime } from "../oneAtATime";
import { mayManage, useCommunitiesAccess } from "../access";
import { labelProblem, MAX_LABEL, MAX_NAME, nameProblem } from "../label";
import { toCommunity } from "../routes";
import type { Access, Community } from "../service";
import { ServiceError } from "../service";
import { rolesText, WithAccess } from "./common";

/** Seed 000: "Enter your community name and security label ... Click Save". */
const CreateCommunity = ({ onCreated }: { onCreated: (c: Community) => void }) => {
  const { t } = useTranslation();
  const { addAlert } = useAlerts();
  const { client } = useCommunitiesAccess();
  const [name, setName] = useState("");
  const [label, setLabel] = useState("");
  // A second Save while one runs would be refused as a duplicate.
  const [saving, oneAtATime] = useOneAtATime();
  const nameErr = nameProblem(name);
  const labelErr = labelProblem(label);

  const save = () =>
    oneAtATime(async () => {
      try {
        const created = await client.create({ securityLabel: label, communityName: name.trim() });
        addAlert(t("communityCreated"), AlertVariant.success);
        setName("");
        setLabel("");
        onCreated(created);
      } catch (e) {
        addAlert(
          t("communityNotCreated"),
          AlertVariant.danger,
          e instanceof ServiceError ? e.detail : String(e),
        );
      }
    });

  return (
    <Form
      data-testid="create-community-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (!nameErr && !labelErr && !saving) void save();
      }}
    >
      <Title headingLevel="h2">{t("createCommunity")}</Title>
      <FormGroup label={t("communityName")} isRequired fieldId="communityName">
        <TextInput
          id="communityName"
          data-testid="communityName"
          value={name}
          onChange={(_e, v) => setName(v)}
          validated={name !== "" && nameErr ? "error" : "default"}
          aria-describedby="communityName-helper"
        />
        <FormHelperText>
          <HelperText>
            <HelperTextItem
              id="communityName-helper"
              variant={name !== "" && nameErr ? "error" : "default"}
              data-testid="communityName-help"
            >
              {name !== "" && nameErr ? nameErr : t("communityNameRules", { max: MAX_NAME })}
            </HelperTextItem>
          </HelperText>
        </FormHelperText>
      </FormGroup>
      <FormGroup label={t("securityLabel")} isRequired fieldId="securityLabel">
        <TextInput
          id="securityLabel"
          data-testid="securityLabel"
          value={label}
          onChange={(_e, v) => setLabel(v)}
          validated={label !== "" && labelErr ? "error" : label !== "" ? "success" : "default"}
          aria-describedby="securityLabel-helper"
        />
        <FormHelperText>
          <HelperText>
            <HelperTextItem
              id="securityLabel-helper"
              variant={label !== "" && labelErr ? "error" : "default"}
              data-testid="securityLabel-help"
            >
              {label !== "" && labelErr ? labelErr : t("securityLabelRules", { max: MAX_LABEL })}
            </HelperTextItem>
          </HelperText>
        </FormHelperText>
      </FormGroup>
      <ActionGroup>
        <Button
          type="submit"
          data-testid="save"
          isDisabled={!!nameErr || !!labelErr || saving}
          isLoading={saving}
        >
          {t("save")}
        </Button>
      </ActionGroup>
    </Form>
  );
};

const PAGE = 20;
// How long typing pauses before the list is asked again.
const SEARCH_DELAY_MS = 300;

const CommunityList = ({ access }: { access: Access }) => {
  const { t } = useTranslation();
  const { realm } = useRealm();
  const { client } = useCommunitiesAccess();
  const [first, setFirst] = useState(0);
  const [max, setMax] = useState(PAGE);
  const [typed, setTyped] = useState("");
  const [search, setSearch] = useState("");
  const [mine, setMine] = useState(false);
  const [rows, setRows] = useState<Community[]>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    const timer = setTimeout(() => (setSearch(typed.trim()), setFirst(0)), SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [typed]);

  useEffect(() => {
    let live = true;
    // One more than shown tells whether there is a next page.
    client
      .list(first, max + 1, search, mine)
      .then((cs) => live && (setRows(cs), setError(undefined)))
      .catch((e: Error) => live && setError(e.message));
    return () => {
      live = false;
    };
  }, [client, first, max, search, mine]);

  const filters = (
    <Toolbar>
      <ToolbarContent>
        <ToolbarItem>
          <SearchInput
            data-testid="communities-search"
            aria-label={t("searchCommunities")}
            placeholder={t("searchCommunities")}
            value={typed}
            onChange={(_e, v) => setTyped(v)}
            onClear={() => setTyped("")}
          />
        </ToolbarItem>
        <ToolbarItem>
          <Switch
            id="communities-mine"
            data-testid="communities-mine"
            label={t("onlyMine")}
            isChecked={mine}
            onChange={(_e, on) => (setMine(on), setFirst(0))}
          />
        </ToolbarItem>
      </ToolbarContent>
    </Toolbar>
  );
  if (error)
    return (
      <>
        {filters}
        <HelperText>
          <HelperTextItem variant="error">{error}</HelperTextItem>
        </HelperText>
      </>
    );
  if (!rows) return filters;
  return (
    <>
      {filters}
      <Pagination
        itemCount={first + rows.length}
        page={first / max + 1}
        perPage={max}
        onSetPage={(_e, p) => setFirst((p - 1) * max)}
        onPerPageSelect={(_e, n) => (setMax(n), setFirst(0))}
        isCompact
        toggleTemplate={({ firstIndex, lastIndex }) => (
          <b>
            {firstIndex} - {lastIndex}
          </b>
        )}
      />
      <Table aria-label={t("communities")} variant="compact" data-testid="communities-table">
        <Thead>
          <Tr>
            <Th>{t("securityLabel")}</Th>
            <Th>{t("communityName")}</Th>
            <Th>{t("yourRole")}</Th>
          </Tr>
        </Thead>
        <Tbody>
          {rows.slice(0, max).map((c) => (
            <Tr key={c.securityLabel} data-testid={`community-row-${c.securityLabel}`}>
              <Td dataLabel={t("securityLabel")}>
                {mayManage(access, c.securityLabel) ? (
                  <Link to={toCommunity(realm, c.securityLabel)}>{c.securityLabel}</Link>
                ) : (
                  c.securityLabel
                )}
              </Td>
              <Td dataLabel={t("communityName")}>{c.communityName}</Td>
              <Td dataLabel={t("yourRole")}>{rolesText(access, c.securityLabel, "—")}</Td>
            </Tr>
          ))}
          {rows.length === 0 && (
            <Tr>
              <Td colSpan={3}>{t(search || mine ? "noMatchingCommunities" : "noCommunities")}</Td>
            </Tr>
          )}
        </Tbody>
      </Table>
    </>
  );
};

export default function CommunitiesSection() {
  const { update } = useCommunitiesAccess();
  const { realm } = useRealm();
  const navigate = useNavigate();
  return (
    <WithAccess>
      {(access) => (
        <>
          <ViewHeader titleKey="communities" subKey="communitiesHelp" />
          <PageSection variant="light">
            {access.canCreate && (
              <CreateCommunity
                onCreated={(c) => {
                  // A creator owns what they made (the service made them
                  // owner); service desk's community, made here without
                  // owners, is dormant until it appoints some.
                  if (!access.serviceDesk) {
                    update((a) => ({
                      ...a,
                      owned: [...a.owned, c.securityLabel],
                      memberships: { ...a.memberships, [c.securityLabel]: ["owner"] },
                    }));
                  }
                  // Its page, where its members are added: among thousands
                  // the list would not show it unless searched for.
                  navigate(toCommunity(realm, c.securityLabel));
                }}
              />
            )}
          </PageSection>
          <PageSection variant="light">
            <CommunityList access={access} />
          </PageSection>
        </>
      )}
    </WithAccess>
  );
}
