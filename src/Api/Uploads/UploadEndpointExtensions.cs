namespace SurgeryService.Api.Uploads;

public static class UploadEndpointExtensions
{
    /// <summary>A multipart upload endpoint: the form it accepts and the refusals every upload can answer.</summary>
    public static RouteHandlerBuilder AcceptsUpload<TForm>(this RouteHandlerBuilder endpoint) where TForm : notnull =>
        endpoint
            .Accepts<TForm>("multipart/form-data")
            .DisableAntiforgery()
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
}
