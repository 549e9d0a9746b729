// Short names for the API's schemas (generated types; see client.ts).
import type { components as Control } from "./generated/control";
import type { components as Crm } from "./generated/crm";

type CrmSchemas = Crm["schemas"];
type ControlSchemas = Control["schemas"];

export type Contact = CrmSchemas["Contact"];
export type ContactCreate = CrmSchemas["ContactCreate"];
export type ContactUpdate = CrmSchemas["ContactUpdate"];
export type CallEntry = CrmSchemas["CallEntry"];
export type Task = CrmSchemas["Task"];
export type TaskUpdate = CrmSchemas["TaskUpdate"];
export type Notification = CrmSchemas["Notification"];
export type DirectoryPerson = CrmSchemas["DirectoryPerson"];
export type WorkspaceConfig = CrmSchemas["WorkspaceConfig"];
export type ErrorBody = CrmSchemas["ErrorBody"];
export type CustomValue = Contact["custom"][string];
// crm pages
export type Company = CrmSchemas["Company"];
export type CompanyCreate = CrmSchemas["CompanyCreate"];
export type Deal = CrmSchemas["Deal-Output"];
export type DealCreate = CrmSchemas["DealCreate"];
export type Pipeline = CrmSchemas["Pipeline"];
export type Stage = CrmSchemas["Stage"];
export type Board = CrmSchemas["Board"];
export type BoardStage = CrmSchemas["BoardStage-Output"];
export type Note = CrmSchemas["Note"];
export type CallScript = CrmSchemas["CallScript"];
export type CallResult = CrmSchemas["CallResult"];
export type CallResultCreate = CrmSchemas["CallResultCreate"];

export type WhoAmI = ControlSchemas["WhoAmI"];
export type Role = NonNullable<WhoAmI["role"]>;
